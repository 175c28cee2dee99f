"""Apache Kafka's own command-line tools against the broker, typed exactly as a Kafka user does.

The tools are Kafka's bin/*.sh scripts as ci/kafka-setup writes them (Apache Kafka's tool main
classes with the pinned release's jars; ci/kafka/pom.xml pins the version). KAFKA_HOME points at
that folder; without it the fixture runs ci/kafka-setup, which is fast once its cache is there.

Each check reads the tool's own output (its tables, its summary lines) and compares it with what
was produced, and a changing command is always followed by a describing one that shows the change.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, unique, wait_until

TOOL_TIMEOUT = 180.0


@pytest.fixture(scope="session")
def kafka_home() -> Path:
    home = os.environ.get("KAFKA_HOME")
    if not home:
        out = subprocess.run([str(REPO / "ci" / "kafka-setup")], check=True, capture_output=True, text=True).stdout
        home = out.strip().splitlines()[-1]
    path = Path(home)
    assert (path / "bin" / "kafka-topics.sh").exists(), f"no Kafka tools in {path} (ci/kafka-setup)"
    return path


class Tools:
    """Runs bin/<tool>.sh with --bootstrap-server (or its tool-specific spelling) filled in."""

    def __init__(self, home: Path, bootstrap: str):
        self.home = home
        self.bootstrap = bootstrap

    def run(self, tool: str, *args: str, input: str | None = None, check: bool = True,
            timeout: float = TOOL_TIMEOUT) -> subprocess.CompletedProcess:
        cmd = [str(self.home / "bin" / f"{tool}.sh"), *args]
        # Short-lived JVMs: the C1 compiler and the serial collector start faster on two shared cores.
        env = dict(os.environ, KAFKA_HEAP_OPTS="-Xmx256m", KAFKA_OPTS="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited with {p.returncode}\n--- stdout:\n{p.stdout}\n--- stderr:\n{p.stderr}")
        return p

    def topics(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("kafka-topics", "--bootstrap-server", self.bootstrap, *args, **kw)

    def configs(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("kafka-configs", "--bootstrap-server", self.bootstrap, *args, **kw)

    def groups(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("kafka-consumer-groups", "--bootstrap-server", self.bootstrap, *args, **kw)

    def produce(self, topic: str, lines: list[str], *args: str) -> None:
        self.run("kafka-console-producer", "--bootstrap-server", self.bootstrap, "--topic", topic, *args,
                 input="".join(line + "\n" for line in lines))

    def consume(self, topic: str, count: int, *args: str) -> list[str]:
        p = self.run("kafka-console-consumer", "--bootstrap-server", self.bootstrap, "--topic", topic,
                     "--max-messages", str(count), "--timeout-ms", "60000", *args)
        assert f"Processed a total of {count} messages" in p.stderr, p.stderr
        return p.stdout.splitlines()


@pytest.fixture
def tools(kafka_home, broker) -> Tools:
    return Tools(kafka_home, broker.bootstrap)


def describe_partitions(out: str) -> dict[int, dict[str, str]]:
    """kafka-topics --describe's partition lines, by partition: {"Leader": "1", "Replicas": "1", ...}."""
    parts = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+): (\S*)", line))
        if "Partition" in fields:
            parts[int(fields["Partition"])] = fields
    return parts


def dynamic_configs(out: str) -> dict[str, str]:
    """kafka-configs --describe's "  name=value sensitive=... synonyms={...}" lines."""
    return dict(re.findall(r"^\s+([\w.]+)=(\S*) sensitive=", out, re.M))


def group_table(out: str) -> dict[int, dict[str, str]]:
    """kafka-consumer-groups' table (--describe, --reset-offsets), by partition."""
    rows, header = {}, None
    for line in out.splitlines():
        cols = line.split()
        if cols[:1] == ["GROUP"]:
            header = cols
        elif header and len(cols) >= len(header) - 3 and len(cols) >= 4 and cols[2].isdigit():
            rows[int(cols[header.index("PARTITION")])] = dict(zip(header, cols))
    return rows


# ---------------------------------------------------------------- the quick start

def test_quickstart_topics_console_producer_and_consumer(tools):
    topic = unique("quickstart-events")
    out = tools.topics("--create", "--topic", topic).stdout
    assert f"Created topic {topic}." in out

    desc = tools.topics("--describe", "--topic", topic).stdout
    assert f"Topic: {topic}\tTopicId: " in desc
    assert "PartitionCount: 1\tReplicationFactor: 1" in desc
    parts = describe_partitions(desc)
    assert list(parts) == [0]
    assert parts[0]["Leader"] == parts[0]["Replicas"] == parts[0]["Isr"] == "1"

    assert topic in tools.topics("--list").stdout.splitlines()

    tools.produce(topic, ["This is my first event", "This is my second event"])
    assert tools.consume(topic, 2, "--from-beginning") == ["This is my first event", "This is my second event"]


def test_topics_create_with_options_alter_and_delete(tools):
    topic = unique("tools-topic")
    tools.topics("--create", "--topic", topic, "--partitions", "3", "--replication-factor", "1",
                 "--config", "retention.ms=3600000", "--config", "cleanup.policy=compact")
    desc = tools.topics("--describe", "--topic", topic).stdout
    assert "PartitionCount: 3" in desc
    assert "cleanup.policy=compact" in desc and "retention.ms=3600000" in desc, desc
    assert sorted(describe_partitions(desc)) == [0, 1, 2]

    # Creating it again fails the way Kafka's does.
    again = tools.topics("--create", "--topic", topic, check=False)
    assert again.returncode != 0
    assert "already exists" in again.stdout + again.stderr

    tools.topics("--alter", "--topic", topic, "--partitions", "5")
    assert sorted(describe_partitions(tools.topics("--describe", "--topic", topic).stdout)) == [0, 1, 2, 3, 4]
    shrink = tools.topics("--alter", "--topic", topic, "--partitions", "2", check=False)
    assert shrink.returncode != 0
    assert "InvalidPartitionsException" in shrink.stdout + shrink.stderr

    tools.topics("--delete", "--topic", topic)
    wait_until(lambda: topic not in tools.topics("--list").stdout.splitlines(), 60, f"{topic} gone from --list")


def test_console_producer_keys_and_consumer_properties(tools):
    topic = unique("tools-keys")
    tools.topics("--create", "--topic", topic, "--partitions", "1")
    tools.produce(topic, ["k1:v1", "k2:v2", "k3:v3"], "--property", "parse.key=true", "--property", "key.separator=:")
    got = tools.consume(topic, 3, "--from-beginning", "--property", "print.key=true", "--property", "key.separator==",
                        "--property", "print.offset=true", "--property", "print.partition=true")
    # The separator goes between every printed field.
    assert got == [f"Partition:0=Offset:{i}=k{i + 1}=v{i + 1}" for i in range(3)], got


# ---------------------------------------------------------------- consumer groups

def test_consumer_groups_list_describe_and_reset_offsets(tools):
    topic = unique("tools-groups")
    group = unique("tools-group")
    tools.topics("--create", "--topic", topic, "--partitions", "2")
    # Round robin over both partitions (the console producer's default partitioner is sticky).
    tools.produce(topic, [f"record {i}" for i in range(10)], "--producer-property",
                  "partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner")
    got = tools.consume(topic, 10, "--group", group, "--from-beginning")
    assert sorted(got) == sorted(f"record {i}" for i in range(10))

    assert group in tools.groups("--list").stdout.split()

    def committed() -> dict[int, dict[str, str]]:
        return group_table(tools.groups("--describe", "--group", group).stdout)

    rows = committed()
    assert sorted(rows) == [0, 1], rows
    ends = {p: int(r["LOG-END-OFFSET"]) for p, r in rows.items()}
    assert sum(ends.values()) == 10
    for p, r in rows.items():
        assert r["TOPIC"] == topic
        assert r["CURRENT-OFFSET"] == r["LOG-END-OFFSET"], rows
        assert r["LAG"] == "0", rows

    # Without --execute it is a dry run: the plan is printed, nothing changes.
    plan = group_table(tools.groups("--reset-offsets", "--to-earliest", "--group", group, "--topic", topic).stdout)
    assert {p: r["NEW-OFFSET"] for p, r in plan.items()} == {0: "0", 1: "0"}
    assert {p: r["CURRENT-OFFSET"] for p, r in committed().items()} == {p: str(e) for p, e in ends.items()}

    reset = group_table(tools.groups("--reset-offsets", "--to-earliest", "--group", group, "--topic", topic,
                                     "--execute").stdout)
    assert {p: r["NEW-OFFSET"] for p, r in reset.items()} == {0: "0", 1: "0"}
    rows = committed()
    for p, r in rows.items():
        assert r["CURRENT-OFFSET"] == "0", rows
        assert r["LAG"] == str(ends[p]), rows

    # The group reads everything again from there.
    again = tools.consume(topic, 10, "--group", group)
    assert sorted(again) == sorted(got)

    tools.groups("--reset-offsets", "--to-offset", "1", "--group", group, "--topic", f"{topic}:0", "--execute")
    assert committed()[0]["CURRENT-OFFSET"] == "1"
    tools.groups("--reset-offsets", "--shift-by", "-1", "--group", group, "--topic", f"{topic}:1", "--execute")
    assert committed()[1]["CURRENT-OFFSET"] == str(ends[1] - 1)
    tools.groups("--reset-offsets", "--to-latest", "--group", group, "--all-topics", "--execute")
    assert {p: r["LAG"] for p, r in committed().items()} == {0: "0", 1: "0"}

    tools.groups("--delete", "--group", group)
    assert group not in tools.groups("--list").stdout.split()


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_consumer_groups_describe_an_active_group(tools, protocol):
    """A console consumer stays in the group while kafka-consumer-groups describes it."""
    topic = unique("tools-active")
    group = unique(f"tools-active-{protocol}")
    tools.topics("--create", "--topic", topic, "--partitions", "2")
    cmd = [str(tools.home / "bin" / "kafka-console-consumer.sh"), "--bootstrap-server", tools.bootstrap,
           "--topic", topic, "--group", group, "--consumer-property", f"group.protocol={protocol}",
           "--consumer-property", "client.id=tools-active-member"]
    env = dict(os.environ, KAFKA_HEAP_OPTS="-Xmx256m", KAFKA_OPTS="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    member = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              env=env, text=True)
    try:
        def members() -> list[list[str]]:
            out = tools.groups("--describe", "--group", group, "--members").stdout
            return [line.split() for line in out.splitlines() if line.startswith(group)]

        rows = wait_until(lambda: [r for r in members() if r[-1] == "2"], 120, f"one member of {group} owning 2 partitions")
        assert len(rows) == 1, rows
        assert rows[0][3] == "tools-active-member", rows  # GROUP CONSUMER-ID HOST CLIENT-ID #PARTITIONS

        state = tools.groups("--describe", "--group", group, "--state").stdout
        line = next(line.split() for line in state.splitlines() if line.startswith(group))
        assert line[-2:] == ["Stable", "1"], state  # ... STATE #MEMBERS

        listed = tools.groups("--list", "--state").stdout
        assert any(line.split() == [group, "Stable"] for line in listed.splitlines()), listed

        # Kafka refuses to move the offsets of a group that has members.
        busy = tools.groups("--reset-offsets", "--to-earliest", "--group", group, "--topic", topic, "--execute",
                            check=False)
        assert "inactive" in busy.stdout + busy.stderr, busy.stdout + busy.stderr
        refused = tools.groups("--delete", "--group", group, check=False)
        assert "not empty" in (refused.stdout + refused.stderr).lower() or "NonEmptyGroup" in refused.stdout + refused.stderr, \
            refused.stdout + refused.stderr
    finally:
        member.terminate()
        try:
            member.wait(timeout=60)
        except subprocess.TimeoutExpired:
            member.kill()
            member.wait()
    wait_until(lambda: group_state(tools, group) == "Empty", 120, f"{group} empty after its member left")


def group_state(tools: Tools, group: str) -> str:
    out = tools.groups("--describe", "--group", group, "--state").stdout
    line = next((line.split() for line in out.splitlines() if line.startswith(group)), None)
    return line[-2] if line else ""


# ---------------------------------------------------------------- configs

def test_configs_describe_add_and_delete(tools):
    topic = unique("tools-configs")
    tools.topics("--create", "--topic", topic)

    def describe() -> dict[str, str]:
        out = tools.configs("--describe", "--entity-type", "topics", "--entity-name", topic).stdout
        assert f"Dynamic configs for topic {topic} are:" in out, out
        return dynamic_configs(out)

    assert describe() == {}
    out = tools.configs("--alter", "--entity-type", "topics", "--entity-name", topic,
                        "--add-config", "retention.ms=86400000,cleanup.policy=compact").stdout
    assert f"Completed updating config for topic {topic}." in out
    assert describe() == {"retention.ms": "86400000", "cleanup.policy": "compact"}

    # A list value in Kafka's bracket syntax; --topic is the short form of the entity.
    tools.configs("--alter", "--topic", topic, "--add-config", "cleanup.policy=[compact,delete]")
    assert describe()["cleanup.policy"] == "compact,delete"

    tools.configs("--alter", "--entity-type", "topics", "--entity-name", topic, "--delete-config", "retention.ms")
    assert describe() == {"cleanup.policy": "compact,delete"}

    everything = tools.configs("--describe", "--entity-type", "topics", "--entity-name", topic, "--all").stdout
    assert f"All configs for topic {topic} are:" in everything
    all_configs = dynamic_configs(everything)
    assert all_configs["cleanup.policy"] == "compact,delete"
    assert all_configs["retention.ms"] == "604800000", "the default is back"
    assert all_configs["max.message.bytes"] == "1048588"

    bad = tools.configs("--alter", "--entity-type", "topics", "--entity-name", topic, "--add-config",
                        "retention.ms=soon", check=False)
    assert bad.returncode != 0
    assert "InvalidConfigurationException" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    assert describe() == {"cleanup.policy": "compact,delete"}, "a refused alter changes nothing"


# ---------------------------------------------------------------- offsets and records

def test_get_offsets_and_delete_records(tools, tmp_path):
    topic = unique("tools-offsets")
    tools.topics("--create", "--topic", topic)
    tools.produce(topic, [f"r{i}" for i in range(8)])
    latest = tools.run("kafka-get-offsets", "--bootstrap-server", tools.bootstrap, "--topic", topic).stdout
    assert latest.split() == [f"{topic}:0:8"]
    earliest = tools.run("kafka-get-offsets", "--bootstrap-server", tools.bootstrap, "--topic", topic,
                         "--time", "-2").stdout
    assert earliest.split() == [f"{topic}:0:0"]

    spec = tmp_path / "delete.json"
    spec.write_text('{"version": 1, "partitions": [{"topic": "%s", "partition": 0, "offset": 5}]}' % topic)
    out = tools.run("kafka-delete-records", "--bootstrap-server", tools.bootstrap, "--offset-json-file", str(spec)).stdout
    assert "low_watermark: 5" in out, out
    earliest = tools.run("kafka-get-offsets", "--bootstrap-server", tools.bootstrap, "--topic", topic,
                         "--time", "-2").stdout
    assert earliest.split() == [f"{topic}:0:5"]
    assert tools.consume(topic, 3, "--from-beginning") == ["r5", "r6", "r7"]


# ---------------------------------------------------------------- perf tests

def test_producer_and_consumer_perf_tests_report_every_record(tools):
    topic = unique("tools-perf")
    tools.topics("--create", "--topic", topic, "--partitions", "2")
    n = 5000
    out = tools.run("kafka-producer-perf-test", "--topic", topic, "--num-records", str(n), "--record-size", "100",
                    "--throughput", "-1", "--producer-props", f"bootstrap.servers={tools.bootstrap}", "acks=all").stdout
    summary = out.strip().splitlines()[-1]
    assert re.match(rf"{n} records sent, [\d.]+ records/sec", summary), out

    latest = tools.run("kafka-get-offsets", "--bootstrap-server", tools.bootstrap, "--topic", topic).stdout
    assert sum(int(line.rsplit(":", 1)[1]) for line in latest.split()) == n, latest

    out = tools.run("kafka-consumer-perf-test", "--bootstrap-server", tools.bootstrap, "--topic", topic,
                    "--messages", str(n), "--timeout", "60000").stdout
    lines = [line for line in out.splitlines() if line.strip()]
    header = [c.strip() for c in lines[0].split(",")]
    row = [c.strip() for c in lines[1].split(",")]
    result = dict(zip(header, row))
    assert int(result["data.consumed.in.nMsg"]) == n, out
    assert abs(float(result["data.consumed.in.MB"]) - n * 100 / (1024 * 1024)) < 0.01, out


# ---------------------------------------------------------------- the controller quorum

def test_metadata_quorum_describe_status_and_replication(tools):
    """A single node is its own quorum of one: Kafka's tool reads it through DescribeQuorum."""
    status = tools.run("kafka-metadata-quorum", "--bootstrap-server", tools.bootstrap, "describe", "--status").stdout
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", status, re.M))
    assert fields["LeaderId"] == "1", status
    assert int(fields["LeaderEpoch"]) >= 1, status
    assert int(fields["HighWatermark"]) >= 1, status
    assert fields["MaxFollowerLag"] == "0", status
    assert '"id": 1' in fields["CurrentVoters"] and "CONTROLLER://" in fields["CurrentVoters"], status
    replication = tools.run("kafka-metadata-quorum", "--bootstrap-server", tools.bootstrap,
                            "describe", "--replication").stdout
    rows = [line.split() for line in replication.splitlines()[1:] if line.strip()]
    assert [(row[0], row[-1]) for row in rows] == [("1", "Leader")], replication
