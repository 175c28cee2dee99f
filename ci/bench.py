"""Driver of ci/bench: what the broker sustains against what the disk sustains, measured in one run.

Run it through ci/bench, which installs and builds what it needs. It measures, for each record
size (100 B and 1 KiB by default), one partition, acks=1 (the leader's write, no fsync: what
Kafka's own default flush policy acknowledges), librdkafka's rdkafka_performance as the client:

burst produce      N bytes that the page cache takes in without throttling, from a clean cache;
                   beside a raw write of as many bytes to a file (no fsync: the page cache's speed)
burst consume      the burst topic read back at once (the page cache holds it: hot)
sustained produce  S bytes, far more than the page cache absorbs; the rate is taken after the
                   first W bytes (when dirty-page throttling has set in, writers go at the disk's
                   write-back rate), beside a raw sequential write of S bytes to the same disk
                   right before it, measured the same way: the ratio of the two is the figure
                   that matters
sustained consume  the sustained topic read back cold (fsynced, then evicted from the page cache
                   with posix_fadvise(DONTNEED)), beside a cold raw read of the raw file

The contenders (runnel, runnel-before, tansu) and the raw-disk job alternate round by round (the
order rotates each round), every phase starts from a synced page cache, and each figure is
reported as the median and min-max over the rounds; ratios are taken within each round and then
summarised. Tansu keeps its data in memory, so it runs the burst phases only.

The broker's cost is counted in instructions with callgrind (instruction counts do not depend on
what else runs on the machine): each Runnel build runs under valgrind --tool=callgrind, its
counters are zeroed before and dumped after each phase (a fixed, smaller amount of data), and the
report gives instructions per GB of record payload and the functions whose cost per GB differs
most between the two builds.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20
GiB = 1 << 30
GB = 1e9
CHUNK = MiB  # the raw writer's and reader's I/O size (librdkafka's batches are up to 1 MB too)


# ---------------------------------------------------------------------------------------------
# Small helpers


def log(msg: str) -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def meminfo_mib(key: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its threads."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def settle(max_wait: float = 20, memory_s: float = 0) -> dict:
    """Starts a phase from a clean page cache: writes back every dirty page and waits briefly for
    the dirty count to drop (other work on the machine may keep a few pages dirty), then
    memory_s more seconds (see --settle-s). Returns the machine's state then (dirty MiB, free
    MiB, load average), kept with the phase's figures."""
    os.sync()
    deadline = time.monotonic() + max_wait
    while meminfo_mib("Dirty") > 64 and time.monotonic() < deadline:
        time.sleep(0.2)
        os.sync()
    time.sleep(0.5 + memory_s)
    return {"dirty_mib_before": meminfo_mib("Dirty"), "free_mib_before": meminfo_mib("MemFree"),
            "load1_before": float(Path("/proc/loadavg").read_text().split()[0])}


class Meter:
    """The machine's CPU over a phase, from /proc/stat (busy, iowait and steal as shares of all
    cores; steal is time the hypervisor gave to other machines) and the CPU of this script's
    children (the client), so that a phase's figure can be told CPU-bound from disk-bound."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.stat0 = self.stat()
        self.child0 = self.children()

    @staticmethod
    def stat() -> list[int]:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]

    @staticmethod
    def children() -> float:
        t = os.times()
        return t.children_user + t.children_system

    def stop(self) -> dict:
        d = [b - a for a, b in zip(self.stat0, self.stat())]
        total = sum(d) or 1
        user, nice, system, idle, iowait, irq, softirq, steal = d
        return {"machine_busy": (total - idle - iowait - steal) / total, "machine_iowait": iowait / total,
                "machine_steal": steal / total, "client_cpu_s": self.children() - self.child0,
                "wall_s": time.monotonic() - self.t0}


def evict(paths: list[Path]) -> None:
    """Drops the files' pages from the page cache (after writing them back), so that the next
    read comes from the disk. Only these files: the rest of the machine's cache stays."""
    os.sync()
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def files_under(d: Path) -> list[Path]:
    return [Path(r) / f for r, _, fs in os.walk(d) for f in fs]


def log_bytes(partition_dir: Path) -> int:
    return sum(p.stat().st_size for p in partition_dir.glob("*.log"))


def median(xs: list[float]) -> float:
    return statistics.median(xs)


# ---------------------------------------------------------------------------------------------
# Brokers


@dataclass
class Contender:
    name: str
    kind: str  # "runnel", "kafka" (binary: the Kafka home ci/kafka-setup made) or "tansu"
    binary: str
    rev: str = ""

    @property
    def on_disk(self) -> bool:
        return self.kind in ("runnel", "kafka")


KAFKA_PROPERTIES = """process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={host}:{cport}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""


def kafka_command(home: str, data: Path, port: int, logfile: Path) -> list[str]:
    """Formats a fresh one-node KRaft Kafka in data and returns the command that starts it,
    with Kafka's usual 1 GiB heap (as kafka-server-start.sh sets by default)."""
    data.mkdir(parents=True, exist_ok=True)
    props = data.parent / f"{data.name}.properties"
    props.write_text(KAFKA_PROPERTIES.format(host=HOST, port=port, cport=free_port(), data=data))
    with open(logfile, "ab") as out:
        subprocess.run([f"{home}/bin/kafka-storage.sh", "format", "--standalone", "-t", "bench-cluster-0000000000",
                        "-c", str(props)], stdout=out, stderr=subprocess.STDOUT, check=True)
    return [f"{home}/bin/kafka-server-start.sh", str(props)]


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a process: its peak resident set, MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: broker exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench: broker did not listen on port {port} within {timeout}s")


class Broker:
    def __init__(self, c: Contender, data: Path, logfile: Path, wrapper: list[str] | None = None):
        self.c = c
        self.data = data
        self.port = free_port()
        env = None
        if c.kind == "runnel":
            cmd = [c.binary, "server", "--data-dir", str(data), "--listen", f"{HOST}:{self.port}"]
        elif c.kind == "kafka":
            cmd = kafka_command(c.binary, data, self.port, logfile)
            env = dict(os.environ, KAFKA_HEAP_OPTS="-Xmx1g -Xms1g")
        else:
            url = f"tcp://{HOST}:{self.port}"
            cmd = [c.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", "memory://tansu/"]
        self.command = (wrapper or []) + cmd
        with open(logfile, "ab") as out:
            out.write(f"\n$ {shlex.join(self.command)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        wait_port(self.port, self.proc)
        self.peak_rss_mib = 0.0

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def partition_dir(self, topic: str) -> Path:
        return self.data / f"{topic}-0"

    def stop(self) -> None:
        self.peak_rss_mib = peak_rss_mib(self.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def create_topic(bootstrap: str, topic: str, config: dict | None = None) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config or {})],
                        operation_timeout=120, request_timeout=120)[topic].result(timeout=180)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        t = admin.list_topics(topic=topic, timeout=30).topics.get(topic)
        if t is not None and t.error is None and 0 in t.partitions and t.partitions[0].leader >= 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"bench: topic {topic} did not appear in metadata")


# ---------------------------------------------------------------------------------------------
# The client: rdkafka_performance

PRODUCE_RE = re.compile(r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset -?\d+, (\d+) failed\) "
                        r"in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s")
CONSUME_RE = re.compile(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)")


@dataclass
class Run:
    """One measured phase of one contender (or of the raw disk) in one round."""
    who: str
    phase: str  # produce-burst, consume-burst, produce-sustained, consume-sustained
    size: int  # record size; 0 for the raw disk's jobs
    round: int
    payload_bytes: int
    mb_s: float  # MB/s (1e6) of payload, or of bytes for the raw disk
    disk_mb_s: float  # MB/s of bytes in the log (payload plus record and batch overhead)
    seconds: float
    broker_cpu_s: float = 0.0
    series: list[float] = field(default_factory=list)  # MB/s per interval (sustained phases)
    pair: str = ""  # for a raw write beside a broker's run: "<contender> <size>"
    extra: dict = field(default_factory=dict)


def perf_produce(perf: str, b: Broker, topic: str, size: int, count: int) -> tuple[list[tuple[int, int]], int, str]:
    """Produces count records of size bytes; returns the client's progress samples (elapsed ms,
    records delivered) ending with the final summary, and the summary's elapsed ms."""
    cmd = [perf, "-P", "-t", topic, "-p", "0", "-s", str(size), "-c", str(count), "-a", "1",
           "-b", b.bootstrap, "-X", "linger.ms=5",  # the tool's own default linger is 1000 ms
           "-i", "100"]  # a progress line every 100 ms (the sustained rate is read from them)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(900, count / 2000))
    out = proc.stdout + proc.stderr
    matches = PRODUCE_RE.findall(out)
    if not matches:
        raise SystemExit(f"bench: {shlex.join(cmd)} exited {proc.returncode} with no summary:\n{out[-3000:]}")
    _, _, delivered, failed, ms, _, _ = matches[-1]
    # (The tool exits 1 when its final count, produced minus rd_kafka_outq_len, which also counts
    # requests still in flight, differs from the deliveries: what counts is every record delivered.)
    if int(delivered) != count or int(failed) != 0:
        raise SystemExit(f"bench: {b.c.name} {topic}: {delivered} of {count} delivered, {failed} failed "
                         f"(exit {proc.returncode}):\n{out[-3000:]}")
    samples = [(int(m[4]), int(m[2])) for m in matches]
    return samples, int(ms), out


def perf_consume(perf: str, b: Broker, topic: str, count: int) -> tuple[int, int]:
    """Consumes count records from the beginning; returns (payload bytes, ms from first record)."""
    cmd = [perf, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-c", str(count), "-b", b.bootstrap]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(900, count / 2000))
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"bench: {shlex.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}")
    matches = CONSUME_RE.findall(out)
    if not matches:
        raise SystemExit(f"bench: no summary from {shlex.join(cmd)}:\n{out[-3000:]}")
    consumed, nbytes, ms, _, _ = matches[-1]
    if int(consumed) < count:
        raise SystemExit(f"bench: {b.c.name} {topic}: consumed {consumed} of {count}:\n{out[-3000:]}")
    return int(nbytes), max(int(ms), 1)


def window_rate(samples: list[tuple[float, float]], start_at: float) -> tuple[float, float, float]:
    """From cumulative (seconds, bytes) samples, the rate from the first sample that is both at
    or past start_at bytes and in the second half of the run's time, to the last sample. (How
    much a writer gets through at memory speed first varies with the machine's state; on a run
    long enough that this takes less than half of its time, the second half is past it.) Returns
    (bytes/s, window bytes, window seconds)."""
    end_t, end_n = samples[-1]
    for t, n in samples:
        if n >= start_at and t >= end_t / 2 and end_t - t > 0:
            return (end_n - n) / (end_t - t), end_n - n, end_t - t
    raise SystemExit(f"bench: the run never passed the warm-up of {start_at / GiB:.2f} GiB with time "
                     "to spare; raise --sustained-gib or lower --warmup-gib")


def interval_rates(samples: list[tuple[float, float]], step: float = 1.0) -> list[float]:
    """MB/s per interval of about step seconds (for showing how the rate settles)."""
    out = []
    last_t, last_n = 0.0, 0.0
    for t, n in samples:
        if t - last_t >= step * 0.9:
            out.append(round((n - last_n) / (t - last_t) / 1e6, 1))
            last_t, last_n = t, n
    return out


# ---------------------------------------------------------------------------------------------
# The raw disk


def raw_write(path: Path, nbytes: int, fsync: bool) -> tuple[list[tuple[float, float]], float, float]:
    """Writes nbytes sequentially in 1 MiB writes. Returns the (seconds, bytes) samples, the time to
    the last write, and the time including fdatasync (when asked)."""
    buf = os.urandom(CHUNK)
    samples = [(0.0, 0.0)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.monotonic()
        n = 0
        last = t0
        while n < nbytes:
            n += os.write(fd, buf[: min(CHUNK, nbytes - n)])
            now = time.monotonic()
            if now - last >= 0.05:
                samples.append((now - t0, n))
                last = now
        t_written = time.monotonic() - t0
        samples.append((t_written, n))
        if fsync:
            os.fdatasync(fd)
        t_synced = time.monotonic() - t0
    finally:
        os.close(fd)
    return samples, t_written, t_synced


def raw_pipe(path: Path, nbytes: int) -> list[tuple[float, float]]:
    """The least a broker can do: nbytes sent over loopback TCP by one process in 1 MiB
    writes, received by another in 1 MiB reads and written to a file as they come (no
    records, no batches, no fsync). Returns the receiver's (seconds, bytes written) samples."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    rd, wr = os.pipe()
    child = os.fork()
    if child == 0:  # the receiver
        os.close(rd)
        conn, _ = listener.accept()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        samples = [(0.0, 0.0)]
        n, t0 = 0, None
        last = 0.0
        while True:
            got = conn.recv_into(buf)
            if got == 0:
                break
            if t0 is None:
                t0 = time.monotonic()
            os.write(fd, view[:got])
            n += got
            now = time.monotonic()
            if now - last >= 0.05:
                samples.append((now - t0, n))
                last = now
        samples.append((time.monotonic() - (t0 or time.monotonic()), n))
        os.close(fd)
        os.write(wr, json.dumps(samples).encode())
        os._exit(0)
    os.close(wr)
    listener.close()
    buf = os.urandom(CHUNK)
    with socket.create_connection((HOST, port)) as out:
        sent = 0
        while sent < nbytes:
            out.sendall(buf[: min(CHUNK, nbytes - sent)])
            sent += min(CHUNK, nbytes - sent)
        out.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = os.read(rd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(rd)
    os.waitpid(child, 0)
    return [tuple(x) for x in json.loads(b"".join(chunks))]


def raw_write_direct(path: Path, nbytes: int) -> float:
    """Writes nbytes with O_DIRECT in 4 MiB writes and fdatasyncs: the device's own sequential
    write rate, with no page cache (nor the guest memory it needs) in the way. Returns seconds."""
    import mmap

    size = 4 * MiB
    buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT wants
    buf.write(os.urandom(size))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    try:
        t0 = time.monotonic()
        n = 0
        while n < nbytes:
            n += os.write(fd, buf)
        os.fdatasync(fd)
        return time.monotonic() - t0
    finally:
        os.close(fd)
        buf.close()


def raw_read(path: Path) -> tuple[int, float]:
    buf = bytearray(CHUNK)
    fd = os.open(path, os.O_RDONLY)
    try:
        n = 0
        t0 = time.monotonic()
        while True:
            k = os.readv(fd, [buf])
            if k == 0:
                break
            n += k
        return n, time.monotonic() - t0
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# The native rounds


class Bench:
    def __init__(self, args, contenders: list[Contender]):
        self.a = args
        self.contenders = contenders
        self.runs: list[Run] = []
        self.work = Path(args.work)
        self.sizes = [int(s) for s in args.sizes.split(",")]
        self.burst = int(args.burst_mib * MiB)
        self.sustained = int(args.sustained_gib * GiB)
        self.warmup = int(args.warmup_gib * GiB)
        self.data_root = Path(tempfile.mkdtemp(prefix=".runnel-bench-", dir=args.data_dir))
        self.state: dict = {}
        self.rss: list[tuple[str, int, float]] = []  # (contender, round, peak RSS MiB)

    def add(self, r: Run) -> None:
        r.extra.update(self.state)
        self.runs.append(r)
        cpu = f"  broker cpu {r.broker_cpu_s:6.2f} s" if r.broker_cpu_s else ""
        size = f"{r.size:5} B" if r.size else "  raw  "
        log(f"  r{r.round} {r.who:14} {r.phase:18} {size} {r.mb_s:9.1f} MB/s  ({r.seconds:.1f} s){cpu}")

    # -- the raw disk's job: a burst write (page cache), a sustained write (the disk), reads
    def raw_round(self, rnd: int) -> None:
        f = self.data_root / "raw-write.bin"
        self.state = settle()
        samples, t_w, _ = raw_write(f, self.burst, fsync=False)
        self.add(Run("raw", "produce-burst", 0, rnd, self.burst, self.burst / t_w / 1e6, self.burst / t_w / 1e6, t_w))
        n, t = raw_read(f)
        self.add(Run("raw", "consume-burst", 0, rnd, n, n / t / 1e6, n / t / 1e6, t))
        f.unlink()
        if "sustained" in self.a.parts:
            # The device's own rate: the sustained size written with O_DIRECT (no page cache, nor
            # the guest memory it takes); then read back cold. (The buffered raw writes are made
            # right before each broker's sustained produce.)
            self.state = settle()
            t = raw_write_direct(f, self.sustained)
            self.add(Run("raw-direct", "produce-sustained", 0, rnd, self.sustained, self.sustained / t / 1e6,
                         self.sustained / t / 1e6, t))
            evict([f])
            n, t = raw_read(f)
            self.add(Run("raw", "consume-sustained", 0, rnd, n, n / t / 1e6, n / t / 1e6, t))
            f.unlink()
            # The same bytes through a loopback socket into the file: the copies every broker
            # makes, without any of a broker's work.
            self.state = settle(memory_s=self.a.settle_s)
            samples = raw_pipe(f, self.sustained)
            rate, wbytes, wsec = window_rate(samples, self.warmup)
            self.add(Run("raw-pipe", "produce-sustained", 0, rnd, self.sustained, rate / 1e6, rate / 1e6,
                         samples[-1][0], series=interval_rates(samples),
                         extra={"whole_run_mb_s": self.sustained / samples[-1][0] / 1e6,
                                "window_bytes": wbytes, "window_s": wsec, "dirty_mib_after": meminfo_mib("Dirty")}))
            evict([f])
            f.unlink()

    def raw_sustained(self, rnd: int, f: Path, pair: str) -> None:
        """A raw sequential write of the sustained size, measured like the brokers' sustained
        produce; pair names the broker run it stands beside (empty: the raw job's own)."""
        self.state = settle(memory_s=self.a.settle_s)
        meter = Meter()
        samples, t_w, t_s = raw_write(f, self.sustained, fsync=True)
        self.state.update(meter.stop())
        rate, wbytes, wsec = window_rate(samples, self.warmup)
        self.add(Run("raw", "produce-sustained", 0, rnd, self.sustained, rate / 1e6, rate / 1e6, t_w,
                     series=interval_rates(samples), pair=pair,
                     extra={"whole_run_mb_s": self.sustained / t_w / 1e6,
                            "with_fdatasync_mb_s": self.sustained / t_s / 1e6,
                            "window_bytes": wbytes, "window_s": wsec,
                            "dirty_mib_after": meminfo_mib("Dirty")}))

    def produce(self, b: Broker, rnd: int, phase: str, topic: str, size: int, count: int) -> Run:
        cpu0 = cpu_seconds(b.pid)
        meter = Meter()
        samples, ms, _ = perf_produce(self.a.perf, b, topic, size, count)
        self.state.update(meter.stop())
        cpu = cpu_seconds(b.pid) - cpu0
        payload = size * count
        overhead = log_bytes(b.partition_dir(topic)) / payload if b.c.on_disk else 1.0
        if phase == "produce-sustained":
            series = [(t / 1000, n * size * overhead) for t, n in samples]
            rate, wbytes, wsec = window_rate([(0.0, 0.0)] + series, self.warmup)
            return Run(b.c.name, phase, size, rnd, payload, rate / overhead / 1e6, rate / 1e6, ms / 1000, cpu,
                       series=interval_rates(series),
                       extra={"whole_run_mb_s": payload / ms / 1e3, "window_bytes": wbytes, "window_s": wsec,
                              "log_overhead": overhead, "dirty_mib_after": meminfo_mib("Dirty")})
        rate = payload / (ms / 1000)
        return Run(b.c.name, phase, size, rnd, payload, rate / 1e6, rate * overhead / 1e6, ms / 1000, cpu,
                   extra={"log_overhead": overhead})

    def consume(self, b: Broker, rnd: int, phase: str, topic: str, size: int, count: int) -> Run:
        overhead = log_bytes(b.partition_dir(topic)) / (size * count) if b.c.on_disk else 1.0
        cpu0 = cpu_seconds(b.pid)
        meter = Meter()
        nbytes, ms = perf_consume(self.a.perf, b, topic, count)
        self.state.update(meter.stop())
        cpu = cpu_seconds(b.pid) - cpu0
        rate = nbytes / (ms / 1000)
        return Run(b.c.name, phase, size, rnd, nbytes, rate / 1e6, rate * overhead / 1e6, ms / 1000, cpu,
                   extra={"log_overhead": overhead})

    def contender_round(self, c: Contender, rnd: int) -> None:
        data = self.data_root / f"{c.name}-data"
        shutil.rmtree(data, ignore_errors=True)
        b = Broker(c, data, self.work / f"{c.name}.log")
        try:
            for size in self.sizes:
                topic = f"burst-{size}"
                create_topic(b.bootstrap, topic)
                count = self.burst // size
                self.state = settle()
                self.add(self.produce(b, rnd, "produce-burst", topic, size, count))
                self.add(self.consume(b, rnd, "consume-burst", topic, size, count))
                if c.on_disk and "recompress" in self.a.parts:
                    # The client sends uncompressed batches; the topic says lz4, so the broker
                    # recompresses every batch (Kafka's LogValidator path).
                    topic = f"recompress-{size}"
                    try:
                        create_topic(b.bootstrap, topic, {"compression.type": "lz4"})
                    except Exception as e:  # a build from before compression.type refuses it
                        log(f"  r{rnd} {c.name}: no recompress phase ({e})")
                    else:
                        self.state = settle()
                        self.add(self.produce(b, rnd, "produce-recompress", topic, size, count))
            if c.on_disk and "sustained" in self.a.parts:
                for size in self.sizes:
                    topic = f"sustained-{size}"
                    create_topic(b.bootstrap, topic)
                    count = self.sustained // size
                    # The disk's rate drifts (it is shared, and virtual here): the raw write that
                    # this run is compared with runs right before it.
                    raw = self.data_root / "raw-write.bin"
                    self.raw_sustained(rnd, raw, f"{c.name} {size}")
                    raw.unlink()
                    self.state = settle(memory_s=self.a.settle_s)
                    self.add(self.produce(b, rnd, "produce-sustained", topic, size, count))
                    evict(files_under(b.partition_dir(topic)))
                    self.add(self.consume(b, rnd, "consume-sustained", topic, size, count))
                    # Give the memory back, so that the next sustained writer starts like this one.
                    evict(files_under(b.partition_dir(topic)))
        finally:
            b.stop()
            self.rss.append((c.name, rnd, b.peak_rss_mib))
            shutil.rmtree(data, ignore_errors=True)

    def native(self) -> None:
        jobs = ["raw"] + [c.name for c in self.contenders]
        by_name = {c.name: c for c in self.contenders}
        for rnd in range(1, self.a.rounds + 1):
            k = (rnd - 1) % len(jobs)
            order = jobs[k:] + jobs[:k]
            log(f"bench: round {rnd} of {self.a.rounds}: {', '.join(order)}")
            t0 = time.monotonic()
            for job in order:
                if job == "raw":
                    self.raw_round(rnd)
                else:
                    self.contender_round(by_name[job], rnd)
            log(f"bench: round {rnd} took {time.monotonic() - t0:.0f} s")


# ---------------------------------------------------------------------------------------------
# Callgrind


@dataclass
class Count:
    who: str
    phase: str  # produce, consume, or idle (no traffic)
    size: int
    round: int
    payload_bytes: int
    instructions: int
    dump: str
    seconds: float  # wall time between zeroing and dumping
    idle_per_s: float = 0.0  # the same broker's instructions per second without traffic

    @property
    def per_gb(self) -> float:
        return self.instructions / (self.payload_bytes / GB)

    @property
    def net_per_gb(self) -> float:
        """Without the work the broker does per second whatever the traffic (timers, group and
        coordinator ticks), which under valgrind's slowdown would otherwise count per GB."""
        return (self.instructions - self.idle_per_s * self.seconds) / (self.payload_bytes / GB)


def callgrind_dump(pid: int, base: Path, n: int, timeout: float = 300) -> Path:
    """Asks callgrind for a dump and waits for its file (base.n) to be complete."""
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True, timeout=timeout)
    path = Path(f"{base}.{n}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - 4096))
                if b"\ntotals:" in f.read():
                    fix_zero_call_counts(path)
                    return path
        time.sleep(0.2)
    raise SystemExit(f"bench: callgrind did not write {path}")


def fix_zero_call_counts(path: Path) -> None:
    """A call that began before the counters were zeroed is dumped with calls=0; callgrind_annotate
    (3.19) then takes that call's inclusive cost for the caller's own cost (all of it lands on
    clone). Count such calls once, so that callgrind_annotate reads the dumps right."""
    text = path.read_text(errors="replace")
    path.write_text(re.sub(r"(?m)^calls=0 ", "calls=1 ", text))


def annotate(path: Path) -> None:
    """callgrind_annotate's views of a dump, beside it: exclusive and inclusive costs."""
    for inclusive in ("no", "yes"):
        out = Path(f"{path}.{'inclusive' if inclusive == 'yes' else 'self'}.txt")
        with open(out, "w") as f:
            subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=99.9", f"--inclusive={inclusive}",
                            str(path)], stdout=f, stderr=subprocess.STDOUT, check=False)


def callgrind_total(path: Path) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"bench: no summary line in {path}")


def self_cost_by_function(path: Path) -> tuple[collections.Counter, collections.Counter]:
    """Exclusive instruction counts and call counts per function name from a callgrind dump (names
    as valgrind demangles them, files dropped so that code that moved between files still
    matches)."""
    names: dict[str, str] = {}
    cost: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    callee = "?"
    fn = "?"
    skip_next = False
    name_re = re.compile(r"\((\d+)\)(?: (.*))?$")

    def name(spec: str) -> str:
        m = name_re.match(spec.strip())
        if not m:
            return spec.strip()
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), f"#{m.group(1)}")

    with open(path, errors="replace") as f:
        for line in f:
            c = line[:1]
            if c.isdigit() or c in "+-*":
                if skip_next:  # the inclusive cost of the call above
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    cost[fn] += int(parts[1])
            elif line.startswith("fn="):
                fn = name(line[3:])
            elif line.startswith("cfn="):
                callee = name(line[4:])
            elif line.startswith("calls="):
                skip_next = True
                calls[callee] += int(line[6:].split()[0])
    return cost, calls


def component(fn: str) -> str:
    """Where a function belongs, for a summary: crate::module for Runnel's crates, the crate for
    other Rust code, "C (libc: malloc, memcpy, ...)" for the rest."""
    m = re.match(r"[<&\s]*(?:mut |dyn |impl )?([A-Za-z_][A-Za-z0-9_]*)::(?:([a-z_][a-z0-9_]*)::)?", fn)
    if not m:
        return "C (libc: malloc, memcpy, ...)"
    crate, module = m.group(1), m.group(2)
    if crate.startswith("runnel") and module:
        return f"{crate}::{module}"
    if crate in ("core", "alloc", "std"):
        return "Rust std (core, alloc, std)"
    return crate


def canonical_names(old: collections.Counter, new: collections.Counter) -> collections.Counter:
    """Renames the old build's functions whose module became a crate of its own in the new build
    (runnel_actors::broker::config::X -> runnel_broker::config::X), so that they are compared."""
    crates = set(re.findall(r"\b(runnel_[a-z0-9_]+)::", "\n".join(new)))

    def canon(name: str) -> str:
        return re.sub(r"\brunnel_[a-z0-9_]+::([a-z0-9_]+)::",
                      lambda m: f"runnel_{m.group(1)}::" if f"runnel_{m.group(1)}" in crates else m.group(0), name)

    out: collections.Counter = collections.Counter()
    for name, v in old.items():
        out[canon(name)] += v
    return out


class Callgrind:
    def __init__(self, bench: Bench, contenders: list[Contender]):
        self.b = bench
        self.contenders = [c for c in contenders if c.kind == "runnel"]  # valgrind runs no JVM well
        self.counts: list[Count] = []
        self.dir = bench.work / "callgrind"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.nbytes = int(bench.a.callgrind_mib * MiB)

    def run(self) -> None:
        rounds = self.b.a.callgrind_rounds
        for rnd in range(1, rounds + 1):
            k = (rnd - 1) % len(self.contenders)
            order = self.contenders[k:] + self.contenders[:k]
            log(f"bench: callgrind round {rnd} of {rounds}: {', '.join(c.name for c in order)}")
            for c in order:
                self.one(c, rnd)

    def one(self, c: Contender, rnd: int) -> None:
        data = self.b.data_root / f"{c.name}-callgrind"
        shutil.rmtree(data, ignore_errors=True)
        base = self.dir / f"{c.name}.r{rnd}.out"
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={base}", "--collect-atstart=yes",
                   "--compress-strings=no", "--compress-pos=no"]
        b = Broker(c, data, self.b.work / f"{c.name}-callgrind.log", wrapper=wrapper)
        n = 0

        def zero() -> float:
            subprocess.run(["callgrind_control", "-z", str(b.pid)], check=True, capture_output=True)
            return time.monotonic()

        try:
            for size in self.b.sizes:
                create_topic(b.bootstrap, f"cg-{size}")
            # What the broker spends without traffic, per second.
            t0 = zero()
            time.sleep(self.b.a.callgrind_idle_s)
            n += 1
            dump = callgrind_dump(b.pid, base, n)
            idle = Count(c.name, "idle", 0, rnd, 0, callgrind_total(dump), str(dump), time.monotonic() - t0)
            idle.idle_per_s = idle.instructions / idle.seconds
            self.counts.append(idle)
            log(f"  r{rnd} {c.name:14} idle            {idle.idle_per_s / 1e6:10.2f} M instructions/s")
            for size in self.b.sizes:
                topic = f"cg-{size}"
                count = self.nbytes // size
                t0 = zero()
                perf_produce(self.b.a.perf, b, topic, size, count)
                n += 1
                dump = callgrind_dump(b.pid, base, n)
                self.add(Count(c.name, "produce", size, rnd, size * count, callgrind_total(dump), str(dump),
                               time.monotonic() - t0, idle.idle_per_s))
                t0 = zero()
                nbytes, _ = perf_consume(self.b.a.perf, b, topic, count)
                n += 1
                dump = callgrind_dump(b.pid, base, n)
                self.add(Count(c.name, "consume", size, rnd, nbytes, callgrind_total(dump), str(dump),
                               time.monotonic() - t0, idle.idle_per_s))
        finally:
            b.stop()
            shutil.rmtree(data, ignore_errors=True)

    def add(self, k: Count) -> None:
        self.counts.append(k)
        log(f"  r{k.round} {k.who:14} {k.phase:8} {k.size:5} B  {k.instructions / 1e6:10.1f} M instructions "
            f"for {k.payload_bytes / 1e6:.0f} MB in {k.seconds:.1f} s: {k.per_gb / 1e9:.3f} G/GB, "
            f"{k.net_per_gb / 1e9:.3f} without the idle rate")

    def median_dump(self, who: str, phase: str, size: int, key=lambda k: k.per_gb) -> Count | None:
        ks = sorted((k for k in self.counts if (k.who, k.phase, k.size) == (who, phase, size)), key=key)
        return ks[(len(ks) - 1) // 2] if ks else None

    def profile_diff(self, new: str, old: str, top: int) -> dict:
        """Per phase, the functions whose instructions per GB differ most between new and old (the
        dumps of the median round)."""
        out = {}
        for size in self.b.sizes:
            for phase in ("produce", "consume"):
                a, b = self.median_dump(new, phase, size), self.median_dump(old, phase, size)
                if not a or not b:
                    continue
                annotate(Path(a.dump))
                annotate(Path(b.dump))
                (ca, na), (cb, nb) = self_cost_by_function(Path(a.dump)), self_cost_by_function(Path(b.dump))
                cb, nb = canonical_names(cb, ca), canonical_names(nb, na)
                ga, gb = a.payload_bytes / GB, b.payload_bytes / GB
                rows = []
                for f in set(ca) | set(cb):
                    x, y = ca.get(f, 0) / ga, cb.get(f, 0) / gb
                    rows.append((x - y, x, y, na.get(f, 0), nb.get(f, 0), f))
                rows.sort(key=lambda r: -abs(r[0]))
                comps: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
                for _, x, y, _, _, f in rows:
                    comps[component(f)][0] += x
                    comps[component(f)][1] += y
                comp_rows = sorted(((x - y, x, y, k) for k, (x, y) in comps.items()), key=lambda r: -abs(r[0]))
                out[f"{phase} {size}"] = {
                    "new_dump": a.dump, "old_dump": b.dump,
                    "new_per_gb": a.per_gb, "old_per_gb": b.per_gb,
                    "new_seconds": a.seconds, "old_seconds": b.seconds,
                    "top_new": [(f, v / ga) for f, v in ca.most_common(top)],
                    "top_old": [(f, v / gb) for f, v in cb.most_common(top)],
                    "diff": rows[:top],
                    "components": comp_rows[:top],
                }
        return out

    def idle_diff(self, new: str, old: str, top: int) -> dict | None:
        """What each build runs with no traffic: instructions per second by component and function."""
        a = self.median_dump(new, "idle", 0, key=lambda k: k.idle_per_s)
        b = self.median_dump(old, "idle", 0, key=lambda k: k.idle_per_s)
        if not a or not b:
            return None
        (ca, na), (cb, nb) = self_cost_by_function(Path(a.dump)), self_cost_by_function(Path(b.dump))
        cb, nb = canonical_names(cb, ca), canonical_names(nb, na)
        rows = sorted(((ca.get(f, 0) / a.seconds - cb.get(f, 0) / b.seconds, ca.get(f, 0) / a.seconds,
                        cb.get(f, 0) / b.seconds, na.get(f, 0), nb.get(f, 0), f) for f in set(ca) | set(cb)),
                      key=lambda r: -abs(r[0]))
        comps: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
        for _, x, y, _, _, f in rows:
            comps[component(f)][0] += x
            comps[component(f)][1] += y
        comp_rows = sorted(((x - y, x, y, k) for k, (x, y) in comps.items()), key=lambda r: -abs(r[0]))
        return {"new": a, "old": b, "diff": rows[:top], "components": comp_rows[:8]}


# ---------------------------------------------------------------------------------------------
# The report


def spread(xs: list[float], fmt: str) -> str:
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return format(xs[0], fmt)
    return f"{format(median(xs), fmt)} [{format(min(xs), fmt)}–{format(max(xs), fmt)}]"


PHASES = [("produce-burst", "produce, burst"), ("produce-recompress", "produce, burst, into lz4 (recompressed)"),
          ("produce-sustained", "produce, sustained"),
          ("consume-burst", "consume, burst (hot)"), ("consume-sustained", "consume, sustained (cold)")]


def fmt_size(size: int) -> str:
    return "1 KiB" if size == 1024 else f"{size} B"


class Report:
    def __init__(self, bench: Bench, cg: Callgrind | None, contenders: list[Contender], command: str,
                 date: str | None = None):
        self.date = date or time.strftime("%Y-%m-%d %H:%M %Z")
        self.b = bench
        self.cg = cg
        self.contenders = contenders
        self.command = command
        self.lines: list[str] = []
        self.targets: list[tuple[str, str, str]] = []

    def w(self, s: str = "") -> None:
        self.lines.append(s)

    def runs(self, who: str, phase: str, size: int) -> list[Run]:
        sz = 0 if who.startswith("raw") else size
        return [r for r in self.b.runs if (r.who, r.phase, r.size) == (who, phase, sz)]

    def paired(self, a: str, b: str, phase: str, size: int, disk: bool) -> list[float]:
        return list(self.paired_by_round(a, b, phase, size, disk).values())

    def paired_by_round(self, a: str, b: str, phase: str, size: int, disk: bool) -> dict[int, float]:
        """Per-round ratios a/b (on log bytes when disk, i.e. against the raw disk: the raw write
        right beside a's run when there is one, else the raw job's of the same round)."""
        ra = {r.round: r for r in self.runs(a, phase, size)}
        rb = {r.round: r for r in self.runs(b, phase, size) if not r.pair}
        if b == "raw":
            rb.update({r.round: r for r in self.runs(b, phase, size) if r.pair == f"{a} {size}"})
        out = {}
        for rnd in sorted(set(ra) & set(rb)):
            x = ra[rnd].disk_mb_s if disk else ra[rnd].mb_s
            y = rb[rnd].disk_mb_s if disk else rb[rnd].mb_s
            if y:
                out[rnd] = x / y
        return out

    def build(self) -> str:
        a, b = self.b.a, self.b
        names = [c.name for c in self.contenders]
        has = set(names)
        self.w("# Runnel broker benchmark")
        self.w()
        self.w(f"Command: `{self.command}`  ")
        self.w(f"Date: {self.date}; wall time {a.wall_s / 60:.0f} min  ")
        for c in self.contenders:
            self.w(f"- `{c.name}`: {c.binary}" + (f" ({c.rev})" if c.rev else ""))
        self.w(f"- client: rdkafka_performance ({Path(a.perf).name}), `-a 1 -X linger.ms=5`, one partition, "
               "no compression")
        mem = meminfo_mib("MemTotal")
        dirty = {k: Path(f"/proc/sys/vm/{k}").read_text().strip() for k in
                 ("dirty_ratio", "dirty_background_ratio", "dirty_bytes", "dirty_background_bytes")}
        df = subprocess.run(["df", "-h", "--output=source,fstype,size", str(b.data_root.parent)], capture_output=True,
                            text=True).stdout.splitlines()[-1].split()
        self.w(f"- machine: {os.cpu_count()} cores shared by client, broker and anything else running; "
               f"{mem / 1024:.1f} GiB RAM; vm.dirty_ratio={dirty['dirty_ratio']}, "
               f"dirty_background_ratio={dirty['dirty_background_ratio']}; data on {' '.join(df)} "
               f"({b.data_root.parent})")
        self.w(f"- {a.rounds} rounds, contenders and the raw disk alternating (order rotating each round); "
               f"burst {a.burst_mib:g} MiB, sustained {a.sustained_gib:g} GiB with the rate taken over the second half "
               f"of the run's time (and after at least {a.warmup_gib:g} GiB), each sustained write after {a.settle_s:g} s "
               f"of rest; callgrind {a.callgrind_mib:g} MiB per phase, {a.callgrind_rounds} rounds")
        self.w()
        self.w("Throughput is MB/s (10^6 bytes) of record payload, median [min–max] over the rounds; the raw "
               "disk's figures are MB/s of bytes written or read by 1 MiB calls on a file next to the brokers' "
               "data (`raw` produce burst: no fsync, the page cache; sustained: rate over the second half of the run, like the "
               "brokers'; consume sustained: cold read after posix_fadvise(DONTNEED)). Ratios are taken within "
               "each round, then summarised; the ratio to the raw disk compares bytes written to the log "
               "(payload plus record and batch overhead) with bytes written by the raw writer, and for "
               "sustained produce it uses the raw write made right before that broker's run (the disk's "
               "rate drifts), so the raw column there holds every raw write of the run. Every sustained write "
               f"(raw or broker) starts after a sync and {a.settle_s:g} s of rest with the memory of earlier "
               "phases given back (see --settle-s). `O_DIRECT`: the same size written with O_DIRECT in 4 MiB "
               "writes, the device's own rate without the page cache. `socket → file`: the same size sent over "
               "loopback TCP by one process in 1 MiB writes and written to a file by another as it arrives, "
               "the copies every broker makes without any of a broker's work (once per round, in the raw job).")
        self.w()
        cols = ["raw disk", "O_DIRECT", "socket → file"] + names
        ratio_cols = []
        if "runnel" in has:
            ratio_cols.append(("runnel ÷ raw", "runnel", "raw", True))
            ratio_cols.append(("runnel ÷ socket → file", "runnel", "raw-pipe", True))
            if "runnel-before" in has:
                ratio_cols.append(("runnel ÷ runnel-before", "runnel", "runnel-before", False))
            if "kafka" in has:
                ratio_cols.append(("runnel ÷ kafka", "runnel", "kafka", False))
            if "tansu" in has:
                ratio_cols.append(("runnel ÷ tansu", "runnel", "tansu", False))
        if "kafka" in has:
            ratio_cols.append(("kafka ÷ raw", "kafka", "raw", True))
            ratio_cols.append(("kafka ÷ socket → file", "kafka", "raw-pipe", True))
        self.w("| phase | " + " | ".join(cols + [r[0] for r in ratio_cols]) + " |")
        self.w("|---" * (1 + len(cols) + len(ratio_cols)) + "|")
        for size in b.sizes:
            for phase, label in PHASES:
                if not self.runs("raw", phase, size) and not any(self.runs(n, phase, size) for n in names):
                    continue
                cells = [spread([r.mb_s for r in self.runs("raw", phase, size)], ".0f"),
                         spread([r.mb_s for r in self.runs("raw-direct", phase, size)], ".0f"),
                         spread([r.mb_s for r in self.runs("raw-pipe", phase, size)], ".0f")]
                cells += [spread([r.mb_s for r in self.runs(n, phase, size)], ".0f") for n in names]
                cells += [spread(self.paired(x, y, phase, size, disk), ".2f") for _, x, y, disk in ratio_cols]
                self.w(f"| {label}, {fmt_size(size)} | " + " | ".join(cells) + " |")
        self.w()

        # how the sustained rate settles: round 1's per-second rates
        first = [r for r in b.runs if r.phase == "produce-sustained" and r.round == 1 and r.series]
        if first:
            self.w("How the sustained rate settles (round 1, MB/s per second of the run; written bytes for "
                   "`raw`, payload for the brokers), and the whole-run figures the warm-up excludes:")
            self.w()
            self.w("| run | per-second MB/s | whole run | second half (the figure) | Dirty after |")
            self.w("|---|---|---|---|---|")
            for r in first:
                per = " ".join(f"{x:.0f}" for x in r.series[:40]) + (" …" if len(r.series) > 40 else "")
                whole = f"{r.extra.get('whole_run_mb_s', 0):.0f}"
                if "with_fdatasync_mb_s" in r.extra:
                    whole += f" ({r.extra['with_fdatasync_mb_s']:.0f} with fdatasync)"
                if r.size:
                    who = f"{r.who} {fmt_size(r.size)}"
                elif r.pair:
                    name, size = r.pair.split()
                    who = f"raw write (before {name} {fmt_size(int(size))})"
                else:
                    who = "raw write (raw job)"
                self.w(f"| {who} | {per} | {whole} | {r.mb_s:.0f} | {r.extra.get('dirty_mib_after', 0)} MiB |")
            self.w()

        # broker CPU per GB, native
        cpu_names = [n for n in names]
        if any(r.broker_cpu_s for r in b.runs):
            self.w("Broker CPU seconds (utime+stime from /proc) per GB of payload in the same native runs "
                   "(noisy: includes the kernel's copy and write-back work charged to the broker, and varies "
                   "with batching):")
            self.w()
            vs_kafka = "runnel" in has and "kafka" in has
            self.w("| phase | " + " | ".join(cpu_names + (["runnel ÷ kafka"] if vs_kafka else [])) + " |")
            self.w("|---" * (1 + len(cpu_names) + vs_kafka) + "|")
            cpu_per_gb = lambda r: r.broker_cpu_s / (r.payload_bytes / GB)
            for size in b.sizes:
                for phase, label in PHASES:
                    cells = [spread([cpu_per_gb(r) for r in self.runs(n, phase, size)], ".2f") for n in cpu_names]
                    if all(c == "n/a" for c in cells):
                        continue
                    if vs_kafka:
                        ours = {r.round: cpu_per_gb(r) for r in self.runs("runnel", phase, size)}
                        theirs = {r.round: cpu_per_gb(r) for r in self.runs("kafka", phase, size)}
                        cells.append(spread([ours[k] / theirs[k] for k in ours if theirs.get(k)], ".2f"))
                    self.w(f"| {label}, {fmt_size(size)} | " + " | ".join(cells) + " |")
            self.w()

        # peak memory
        if b.rss:
            self.w("Peak resident memory of each broker process over a whole round (VmHWM, MiB; Kafka's "
                   "JVM with its usual 1 GiB heap):")
            self.w()
            self.w("| " + " | ".join(names) + (" | runnel ÷ kafka" if {"runnel", "kafka"} <= has else "") + " |")
            self.w("|---" * (len(names) + ({"runnel", "kafka"} <= has)) + "|")
            cells = [spread([m for n2, _, m in b.rss if n2 == n], ".0f") for n in names]
            if {"runnel", "kafka"} <= has:
                ours = {r: m for n2, r, m in b.rss if n2 == "runnel"}
                theirs = {r: m for n2, r, m in b.rss if n2 == "kafka"}
                cells.append(spread([ours[k] / theirs[k] for k in ours if theirs.get(k)], ".2f"))
            self.w("| " + " | ".join(cells) + " |")
            self.w()

        # where the CPU went during the sustained phases
        cores = os.cpu_count() or 1
        rows = []
        for size in b.sizes:
            for phase in ("produce-sustained", "consume-sustained"):
                for n in ["raw"] + names:
                    rs = [r for r in self.runs(n, phase, size) if "machine_busy" in r.extra]
                    if not rs:
                        continue
                    who = n if n != "raw" else "raw write" if phase == "produce-sustained" else "raw read"
                    def share(key: str) -> str:
                        return spread([100 * r.extra[key] for r in rs], ".0f")
                    rows.append(f"| {phase.replace('-', ', ')}, {fmt_size(size)} | {who} | "
                                f"{spread([r.broker_cpu_s / r.extra['wall_s'] for r in rs], '.2f') if n != 'raw' else '–'} | "
                                f"{spread([r.extra['client_cpu_s'] / r.extra['wall_s'] for r in rs], '.2f') if n != 'raw' else '–'} | "
                                f"{share('machine_busy')} | {share('machine_iowait')} | {share('machine_steal')} |")
        if rows:
            self.w(f"CPU during the sustained phases (cores in use over the phase's wall time; the machine's "
                   f"busy, iowait and steal time as % of its {cores} cores, from /proc/stat, so they include "
                   f"whatever else ran; the raw writer's own CPU is in \"busy\"):")
            self.w()
            self.w("| phase | who | broker cores | client cores | machine busy % | iowait % | steal % |")
            self.w("|---|---|---|---|---|---|---|")
            for row in rows:
                self.w(row)
            self.w()

        # instructions per GB
        cg = self.cg
        if cg and cg.counts:
            cnames = [c.name for c in cg.contenders]
            both = {"runnel", "runnel-before"} <= set(cnames)
            self.w(f"Broker instructions per GB of payload (callgrind; user space only: the kernel's work in "
                   f"write/read/send/recv is not counted; a `rep movsb` counts once per byte, so memcpy's count "
                   f"is about the bytes it copies), {a.callgrind_mib:g} MiB per phase, median [min–max] over "
                   f"{a.callgrind_rounds} rounds, G instructions/GB. \"net\" subtracts the broker's idle rate "
                   f"(instructions per second with no traffic, measured for {a.callgrind_idle_s:g} s in the same "
                   f"process) times the phase's wall time under valgrind: timers and coordinator ticks are "
                   f"charged by time, and valgrind stretches time about 50 times.")
            self.w()
            hdr = []
            for n in cnames:
                hdr += [n, f"{n} net"]
            if both:
                hdr += ["runnel ÷ runnel-before", "net ratio"]
            self.w("| phase | " + " | ".join(hdr) + " |")
            self.w("|---" * (1 + len(hdr)) + "|")
            for size in b.sizes:
                for phase in ("produce", "consume"):
                    ks = {n: [k for k in cg.counts if (k.who, k.phase, k.size) == (n, phase, size)] for n in cnames}
                    cells = []
                    for n in cnames:
                        cells.append(spread([k.per_gb / 1e9 for k in ks[n]], ".3f"))
                        cells.append(spread([k.net_per_gb / 1e9 for k in ks[n]], ".3f"))
                    if both and ks["runnel"] and ks["runnel-before"]:
                        cells.append(f"{median([k.per_gb for k in ks['runnel']]) / median([k.per_gb for k in ks['runnel-before']]):.3f}")
                        cells.append(f"{median([k.net_per_gb for k in ks['runnel']]) / median([k.net_per_gb for k in ks['runnel-before']]):.3f}")
                    self.w(f"| {phase}, {fmt_size(size)} | " + " | ".join(cells) + " |")
            idle = {n: [k.idle_per_s / 1e6 for k in cg.counts if (k.who, k.phase) == (n, "idle")] for n in cnames}
            secs = {n: [k.seconds for k in cg.counts if k.who == n and k.phase != "idle"] for n in cnames}
            self.w()
            self.w("Idle rate, M instructions/s without traffic: " + "; ".join(
                f"{n} {spread(idle[n], '.2f')}" for n in cnames) + ". Phase wall times under valgrind: " + "; ".join(
                f"{n} {min(secs[n]):.0f}–{max(secs[n]):.0f} s" for n in cnames if secs[n]) + ".")
            self.w()

        self.targets_section()
        self.profile_section()
        return "\n".join(self.lines) + "\n"

    def normalised(self, a: str, b: str, size: int) -> list[float]:
        """Per-round (a ÷ its raw write) ÷ (b ÷ its raw write), sustained produce: a comparison of
        the two that the disk's drift between their runs does not move."""
        x = self.paired_by_round(a, "raw", "produce-sustained", size, True)
        y = self.paired_by_round(b, "raw", "produce-sustained", size, True)
        return [x[k] / y[k] for k in sorted(set(x) & set(y))]

    def targets_section(self) -> None:
        b = self.b
        names = {c.name for c in self.contenders}
        rows = []
        for size in b.sizes:
            if "runnel" in names and self.runs("raw", "produce-sustained", size):
                rs = self.paired("runnel", "raw", "produce-sustained", size, True)
                if rs:
                    m = median(rs)
                    rows.append((f"sustained produce {fmt_size(size)} ≥ 0.9 × raw write", f"{m:.2f}",
                                 "met" if m >= 0.9 else "not met"))
        if {"runnel", "runnel-before"} <= names:
            for size in b.sizes:
                for phase, label in PHASES:
                    rs = self.paired("runnel", "runnel-before", phase, size, False)
                    if rs:
                        m = median(rs)
                        verdict = "met" if m >= 1.0 else ("within noise" if max(rs) >= 1.0 and m >= 0.95 else "not met")
                        rows.append((f"{label} {fmt_size(size)}: runnel ≥ runnel-before", f"{m:.2f} [{min(rs):.2f}–{max(rs):.2f}]", verdict))
                        ns = self.normalised("runnel", "runnel-before", size) if phase == "produce-sustained" else []
                        if ns:
                            m = median(ns)
                            verdict = "met" if m >= 1.0 else ("within noise" if max(ns) >= 1.0 and m >= 0.95 else "not met")
                            rows.append((f"{label} {fmt_size(size)}: runnel ≥ runnel-before, each ÷ its raw write",
                                         f"{m:.2f} [{min(ns):.2f}–{max(ns):.2f}]", verdict))
            if self.cg and self.cg.counts:
                for size in b.sizes:
                    for phase in ("produce", "consume"):
                        ks = {n: [k for k in self.cg.counts if (k.who, k.phase, k.size) == (n, phase, size)]
                              for n in ("runnel", "runnel-before")}
                        if ks["runnel"] and ks["runnel-before"]:
                            m = median([k.per_gb for k in ks["runnel"]]) / median([k.per_gb for k in ks["runnel-before"]])
                            net = (median([k.net_per_gb for k in ks["runnel"]])
                                   / median([k.net_per_gb for k in ks["runnel-before"]]))
                            def verdict(ratio: float, attr: str) -> str:
                                if ratio <= 1.0:
                                    return "met"
                                new = min(getattr(k, attr) for k in ks["runnel"])
                                old = max(getattr(k, attr) for k in ks["runnel-before"])
                                return "within spread" if new <= old else "not met"
                            rows.append((f"{phase} {fmt_size(size)}: instructions/GB runnel ≤ runnel-before",
                                         f"{m:.3f} (net of idle: {net:.3f})",
                                         f"{verdict(m, 'per_gb')}; net: {verdict(net, 'net_per_gb')}"))
        if rows:
            self.w("Targets (issue 10, item 7); throughput ratios are medians of per-round ratios [min–max] "
                   "(\"within noise\": median ≥ 0.95 and some round ≥ 1):")
            self.w()
            self.w("| target | measured | verdict |")
            self.w("|---|---|---|")
            for t, m, v in rows:
                self.w(f"| {t} | {m} | {v} |")
            self.w()

    def profile_section(self) -> None:
        cg = self.cg
        if not cg or not cg.counts or not {"runnel", "runnel-before"} <= {c.name for c in cg.contenders}:
            return
        if not getattr(cg, "profile_ok", True):
            return
        diffs = cg.profile_diff("runnel", "runnel-before", self.b.a.profile_top)
        self.w("Callgrind profiles: the functions whose exclusive instructions per GB differ most, runnel − "
               "runnel-before (the dumps of each build's median round; M instructions per GB; files in "
               f"{cg.dir}, with callgrind_annotate's exclusive and inclusive views beside them as .self.txt and "
               ".inclusive.txt):")
        self.w()
        for key, d in diffs.items():
            phase, size = key.split()
            self.w(f"**{phase}, {fmt_size(int(size))}**: {d['new_per_gb'] / 1e9:.3f} vs "
                   f"{d['old_per_gb'] / 1e9:.3f} G/GB in {d['new_seconds']:.0f} vs {d['old_seconds']:.0f} s "
                   f"(`{Path(d['new_dump']).name}` vs `{Path(d['old_dump']).name}`). By component:")
            self.w()
            self.w("| Δ M/GB | runnel | runnel-before | component |")
            self.w("|---:|---:|---:|---|")
            for delta, x, y, k in d["components"][:8]:
                self.w(f"| {delta / 1e6:+.1f} | {x / 1e6:.1f} | {y / 1e6:.1f} | {k} |")
            self.w()
            self.w("| Δ M/GB | runnel | runnel-before | calls (runnel / before) | function |")
            self.w("|---:|---:|---:|---:|---|")
            for delta, x, y, ka, kb, f in d["diff"]:
                self.w(f"| {delta / 1e6:+.1f} | {x / 1e6:.1f} | {y / 1e6:.1f} | {ka} / {kb} | `{f[:160]}` |")
            self.w()
        idle = cg.idle_diff("runnel", "runnel-before", self.b.a.profile_top)
        if idle:
            self.w(f"**idle** (no traffic, {idle['new'].seconds:.0f} s): {idle['new'].idle_per_s / 1e6:.2f} vs "
                   f"{idle['old'].idle_per_s / 1e6:.2f} M instructions/s (`{Path(idle['new'].dump).name}` vs "
                   f"`{Path(idle['old'].dump).name}`). By component, M instructions/s:")
            self.w()
            self.w("| Δ M/s | runnel | runnel-before | component |")
            self.w("|---:|---:|---:|---|")
            for delta, x, y, k in idle["components"]:
                self.w(f"| {delta / 1e6:+.3f} | {x / 1e6:.3f} | {y / 1e6:.3f} | {k} |")
            self.w()
            self.w("| Δ M/s | runnel | runnel-before | calls (runnel / before) | function |")
            self.w("|---:|---:|---:|---:|---|")
            for delta, x, y, ka, kb, f in idle["diff"]:
                self.w(f"| {delta / 1e6:+.3f} | {x / 1e6:.3f} | {y / 1e6:.3f} | {ka} / {kb} | `{f[:160]}` |")
            self.w()


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="native rounds (default 5)")
    ap.add_argument("--sizes", default="100,1024", help="record sizes in bytes (default 100,1024)")
    ap.add_argument("--contenders", default="runnel,runnel-before,kafka,tansu",
                    help="any of runnel, runnel-before, kafka, tansu (default all that are given)")
    ap.add_argument("--parts", default="burst,recompress,sustained,callgrind",
                    help="burst (always runs), recompress (produce into a compression.type=lz4 topic), "
                         "sustained, callgrind (default all)")
    ap.add_argument("--burst-mib", type=float, default=512, help="burst phases, MiB of payload (default 512)")
    ap.add_argument("--sustained-gib", type=float, default=7, help="sustained phases, GiB of payload (default 7)")
    ap.add_argument("--warmup-gib", type=float, default=2,
                    help="sustained rate taken after this many GiB and the first half of the run's time "
                         "(default 2)")
    ap.add_argument("--settle-s", type=float, default=15,
                    help="seconds to wait before each sustained write, after syncing (default 15): on a "
                         "VM that hands free memory back to its host (virtio-balloon free page reporting), "
                         "memory freed just before makes the next writer fast; waiting puts every writer "
                         "in the same state")
    ap.add_argument("--callgrind-mib", type=float, default=512, help="callgrind phases, MiB (default 512)")
    ap.add_argument("--callgrind-rounds", type=int, default=3, help="callgrind rounds (default 3)")
    ap.add_argument("--callgrind-idle-s", type=float, default=10,
                    help="seconds without traffic under callgrind, for the idle rate (default 10)")
    ap.add_argument("--profile-top", type=int, default=12, help="functions per phase in the profile diff")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke test: 2 rounds, burst 64 MiB, sustained 1 GiB after 0.25, callgrind 32 MiB once")
    ap.add_argument("--out", help="the Markdown report (default WORK/../bench-report.md); JSON beside it")
    ap.add_argument("--report-from", metavar="JSON",
                    help="write the report again from a run's JSON (and its callgrind dumps, if still there); "
                         "runs nothing")
    ap.add_argument("--perf")
    ap.add_argument("--tansu")
    ap.add_argument("--kafka", help="Apache Kafka's home, as ci/kafka-setup prints it")
    ap.add_argument("--runnel")
    ap.add_argument("--runnel-rev", default="")
    ap.add_argument("--runnel-before")
    ap.add_argument("--runnel-before-rev", default="")
    ap.add_argument("--work", help="logs, callgrind dumps")
    ap.add_argument("--data-dir", help="where the brokers' data and the raw file go")
    ap.add_argument("--command", default="ci/bench", help="the command line, for the report")
    if "--quick" in sys.argv[1:]:  # new defaults; options given explicitly still win
        ap.set_defaults(rounds=2, burst_mib=64, sustained_gib=1, warmup_gib=0.25, callgrind_mib=32,
                        callgrind_rounds=1, settle_s=1, callgrind_idle_s=3)
    args = ap.parse_args()
    if args.report_from:
        return report_from(Path(args.report_from), Path(args.out) if args.out else None)
    for required in ("perf", "runnel", "work", "data_dir"):
        if not getattr(args, required):
            ap.error(f"--{required.replace('_', '-')} is required (ci/bench gives it)")
    args.t_start = time.monotonic()
    args.parts = set(args.parts.split(","))

    contenders = []
    for name in args.contenders.split(","):
        if name == "runnel":
            contenders.append(Contender("runnel", "runnel", args.runnel, args.runnel_rev))
        elif name == "runnel-before":
            if args.runnel_before:
                contenders.append(Contender("runnel-before", "runnel", args.runnel_before, args.runnel_before_rev))
            else:
                log("bench: no runnel-before (give ci/bench --before DIR|BINARY|REV or set RUNNEL_BENCH_BEFORE)")
        elif name == "tansu":
            if args.tansu:
                contenders.append(Contender("tansu", "tansu", args.tansu))
        elif name == "kafka":
            if args.kafka:
                contenders.append(Contender("kafka", "kafka", args.kafka, Path(args.kafka).name))
        else:
            raise SystemExit(f"bench: unknown contender {name}")

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = Path(args.out) if args.out else work.parent / "bench-report.md"

    bench = Bench(args, contenders)
    log(f"bench: contenders {', '.join(c.name for c in contenders)}; data in {bench.data_root}; "
        f"{args.rounds} rounds of burst {args.burst_mib:g} MiB"
        + (f", sustained {args.sustained_gib:g} GiB (rate after {args.warmup_gib:g} GiB)" if "sustained" in args.parts else ""))
    cg = None
    try:
        bench.native()
        if "callgrind" in args.parts and shutil.which("valgrind") and any(c.on_disk for c in contenders):
            cg = Callgrind(bench, contenders)
            cg.run()
        elif "callgrind" in args.parts:
            log("bench: valgrind is not installed: no instruction counts (apt-get install valgrind)")
    finally:
        shutil.rmtree(bench.data_root, ignore_errors=True)

    args.wall_s = time.monotonic() - args.t_start
    text = Report(bench, cg, contenders, args.command).build()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    dump = {"runs": [r.__dict__ for r in bench.runs], "callgrind": [k.__dict__ for k in cg.counts] if cg else [],
            "rss": bench.rss,
            "contenders": [c.__dict__ for c in contenders], "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "data_root": str(bench.data_root),
            "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()}}
    out.with_suffix(".json").write_text(json.dumps(dump, indent=1))
    print()
    print(text)
    log(f"bench: report in {out} (raw figures in {out.with_suffix('.json')})")


def report_from(path: Path, out: Path | None) -> None:
    """The report of an earlier run, from its JSON."""
    d = json.loads(path.read_text())
    a = argparse.Namespace(**d["args"])
    a.parts = set(a.parts)
    contenders = [Contender(**c) for c in d.get("contenders", [])] or [
        Contender(n, "tansu" if n == "tansu" else "runnel", "?") for n in a.contenders.split(",")]
    bench = Bench.__new__(Bench)
    bench.a, bench.contenders, bench.work = a, contenders, Path(a.work)
    bench.sizes = [int(x) for x in a.sizes.split(",")]
    bench.runs = [Run(**r) for r in d["runs"]]
    bench.rss = [tuple(x) for x in d.get("rss", [])]
    bench.data_root = Path(d.get("data_root", Path(a.data_dir) / "x"))
    cg = None
    if d["callgrind"]:
        cg = Callgrind.__new__(Callgrind)
        cg.b, cg.contenders, cg.dir = bench, [c for c in contenders if c.on_disk], bench.work / "callgrind"
        cg.counts = [Count(**k) for k in d["callgrind"]]
        if not all(Path(k.dump).exists() for k in cg.counts):
            log(f"bench: some callgrind dumps are gone from {cg.dir}: no profile section")
            cg.profile_ok = False
    text = Report(bench, cg, contenders, a.command, date=d.get("date")).build()
    out = out or path.with_suffix(".md")
    out.write_text(text)
    print(text)
    log(f"bench: report in {out}")


if __name__ == "__main__":
    sys.exit(main())
