"""Driver of ci/bench: runs rdkafka_performance against each broker and measures the broker.

For each broker (started fresh), for each record size: produce N records with acks=1 to one
topic and N with acks=all to another (one partition each), then consume the acks=1 topic
from the beginning. Around each phase it reads the broker's utime+stime from /proc/PID/stat
and resets then reads its peak RSS (VmHWM, reset through /proc/PID/clear_refs).
Run it through ci/bench, which installs and builds what it needs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    broker: str
    phase: str
    size: int
    records: int
    records_per_s: float
    mb_per_s: float
    cpu_s: float
    peak_rss_mib: float
    wall_s: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
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


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields after the command: state is field 3 of the full line, utime 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def reset_peak_rss(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


class BrokerProc:
    def __init__(self, name: str, command: list[str], port: int, log: Path):
        self.name = name
        self.port = port
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_port(port, self.proc)

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                        operation_timeout=60, request_timeout=60)[topic].result(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        t = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        if t is not None and t.error is None and 0 in t.partitions and t.partitions[0].leader >= 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"bench: topic {topic} did not appear in metadata")


PRODUCE_RE = re.compile(r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset -?\d+, (\d+) failed\) "
                        r"in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s")
CONSUME_RE = re.compile(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)")


def run_phase(perf: str, broker: BrokerProc, phase: str, topic: str, size: int, records: int,
              acks: str | None) -> Result:
    if acks is not None:
        cmd = [perf, "-P", "-t", topic, "-p", "0", "-s", str(size), "-c", str(records), "-a", acks,
               "-b", broker.bootstrap, "-X", "linger.ms=5"]  # the tool's own default is 1000 ms
    else:
        cmd = [perf, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-c", str(records), "-b", broker.bootstrap]
    pid = broker.proc.pid
    reset_peak_rss(pid)
    cpu0 = cpu_seconds(pid)
    t0 = time.monotonic()
    timeout = max(600, records / 500)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(pid) - cpu0
    rss = peak_rss_mib(pid)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}")
    if acks is not None:
        matches = PRODUCE_RE.findall(out)
        if not matches:
            raise SystemExit(f"bench: no summary from {' '.join(cmd)}:\n{out[-3000:]}")
        produced, _, delivered, failed, _, rate, mbs = matches[-1]
        if int(delivered) != records or int(failed) != 0:
            raise SystemExit(f"bench: {broker.name} {phase}: {delivered} of {records} delivered, {failed} failed:\n{out[-3000:]}")
    else:
        matches = CONSUME_RE.findall(out)
        if not matches:
            raise SystemExit(f"bench: no summary from {' '.join(cmd)}:\n{out[-3000:]}")
        consumed, _, _, rate, mbs = matches[-1]
        if int(consumed) != records:
            raise SystemExit(f"bench: {broker.name} {phase}: consumed {consumed} of {records}:\n{out[-3000:]}")
    r = Result(broker.name, phase, size, records, float(rate), float(mbs), cpu, rss, wall)
    print(f"  {r.broker:7} {r.phase:12} {size:5} B  {r.records_per_s:12,.0f} rec/s  {r.mb_per_s:8.2f} MB/s  "
          f"cpu {r.cpu_s:7.2f} s  peak rss {r.peak_rss_mib:8.1f} MiB  ({wall:.1f} s wall)", flush=True)
    return r


def bench_broker(name: str, command: list[str], port: int, work: Path, perf: str, sizes: list[int],
                 records: int) -> list[Result]:
    print(f"bench: {name}: {' '.join(command)}", flush=True)
    broker = BrokerProc(name, command, port, work / f"{name}.log")
    results = []
    try:
        for size in sizes:
            for acks, label in (("1", "acks=1"), ("-1", "acks=all")):
                topic = f"bench-{size}-{'all' if acks == '-1' else acks}"
                create_topic(broker.bootstrap, topic)
                results.append(run_phase(perf, broker, f"produce {label}", topic, size, records, acks))
            results.append(run_phase(perf, broker, "consume", f"bench-{size}-1", size, records, None))
    finally:
        broker.stop()
    return results


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000, help="records per phase (default 1,000,000)")
    ap.add_argument("--sizes", default="100,1024", help="record sizes in bytes (default 100,1024)")
    ap.add_argument("--brokers", default="runnel,tansu", help="which brokers (default runnel,tansu)")
    ap.add_argument("--perf", required=True)
    ap.add_argument("--tansu", required=True)
    ap.add_argument("--runnel", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    brokers = args.brokers.split(",")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    print(f"bench: {args.records:,} records per phase, sizes {sizes}, one partition, client rdkafka_performance "
          f"({Path(args.perf).name}); machine: {os.cpu_count()} cores shared by client and broker", flush=True)
    results: list[Result] = []
    for name in brokers:
        port = free_port()
        if name == "runnel":
            data = work / "runnel-data"
            command = [args.runnel, "server", "--data-dir", str(data), "--listen", f"{HOST}:{port}"]
        elif name == "tansu":
            url = f"tcp://{HOST}:{port}"
            command = [args.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                       "--storage-engine", "memory://tansu/"]
        else:
            raise SystemExit(f"bench: unknown broker {name}")
        results += bench_broker(name, command, port, work, args.perf, sizes, args.records)
    if (work / "runnel-data").exists():
        used = subprocess.run(["du", "-sh", str(work / "runnel-data")], capture_output=True, text=True).stdout.split()[0]
        print(f"bench: Runnel's data dir held {used} at the end (removed; broker logs stay in {work})")
        shutil.rmtree(work / "runnel-data", ignore_errors=True)

    print()
    print(f"{'phase':22} {'broker':7} {'records/s':>12} {'MB/s':>9} {'cpu s':>8} {'peak RSS MiB':>13}")
    by_key = {(r.broker, r.phase, r.size): r for r in results}
    phases = []
    for r in results:
        if (r.phase, r.size) not in phases:
            phases.append((r.phase, r.size))
    for phase, size in phases:
        label = f"{phase} {size} B"
        for name in brokers:
            r = by_key.get((name, phase, size))
            if r:
                print(f"{label:22} {name:7} {r.records_per_s:12,.0f} {r.mb_per_s:9.2f} {r.cpu_s:8.2f} {r.peak_rss_mib:13.1f}")
        a, b = by_key.get(("runnel", phase, size)), by_key.get(("tansu", phase, size))
        if a and b:
            print(f"{label:22} {'R/T':7} {ratio(a.records_per_s, b.records_per_s):>12} {ratio(a.mb_per_s, b.mb_per_s):>9} "
                  f"{ratio(a.cpu_s, b.cpu_s):>8} {ratio(a.peak_rss_mib, b.peak_rss_mib):>13}")
    print("\nR/T = Runnel / Tansu: above 1 is better for records/s and MB/s, worse for cpu s and peak RSS.")


if __name__ == "__main__":
    sys.exit(main())
