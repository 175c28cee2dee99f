"""kcat (librdkafka from Debian's packages): Kafka's quick start, done with kcat."""

import re
import subprocess

import pytest

from conftest import HOST, create_topic

KCAT_TIMEOUT = 120


def kcat(broker, *args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run kcat against the broker; fails the test (with kcat's stderr) if it exits non-zero."""
    cmd = ["kcat", "-b", broker.bootstrap, "-m", "60", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=KCAT_TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
    return proc


def test_metadata_lists_the_broker(broker):
    """`kcat -L`: Metadata lists exactly one broker, advertised at the address it listens on."""
    out = kcat(broker, "-L").stdout.decode()
    assert re.search(r"^ 1 brokers:$", out, re.M), out
    m = re.search(r"^  broker (-?\d+) at ([^:\s]+):(\d+)", out, re.M)
    assert m, out
    assert m.group(2) in (HOST, "localhost") and int(m.group(3)) == broker.port, out
    assert int(m.group(1)) >= 0, out


def test_quickstart_events(broker):
    """Kafka's quick start: two lines produced with `kcat -P` read back verbatim with `kcat -C -o beginning -e`."""
    create_topic(broker, "quickstart-events")
    lines = b"This is my first event\nThis is my second event\n"
    kcat(broker, "-P", "-t", "quickstart-events", stdin=lines)
    out = kcat(broker, "-C", "-t", "quickstart-events", "-o", "beginning", "-e", "-q").stdout
    assert out == lines
    # The same records with partition, offset, key length (-1: null key), value length, no headers.
    out = kcat(broker, "-C", "-t", "quickstart-events", "-o", "beginning", "-e", "-q",
               "-f", r"%t|%p|%o|%K|%S|%s|%h\n").stdout
    assert out == (b"quickstart-events|0|0|-1|22|This is my first event|\n"
                   b"quickstart-events|0|1|-1|23|This is my second event|\n")


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce(broker, codec):
    """`kcat -P -z CODEC`: compressed batches (with keys) are stored and read back record for record."""
    topic = f"quickstart-{codec}"
    create_topic(broker, topic)
    lines = b"".join(b"key-%d:value %d of %s %s\n" % (i, i, codec.encode(), b"x" * (i * 37 % 300)) for i in range(50))
    kcat(broker, "-P", "-t", topic, "-z", codec, "-K", ":", "-X", "linger.ms=50", stdin=lines)
    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", r"%o %k:%s\n").stdout
    expected = b"".join(b"%d %s" % (i, line) for i, line in enumerate(lines.splitlines(keepends=True)))
    assert out == expected


def test_group_consumer_resumes_after_its_commit(broker):
    """`kcat -G GROUP`: a balanced (group) consumer reads a three-partition topic to the end and
    commits on exit; the next run of the same group reads only what was produced since."""
    topic = "kcat-group"
    create_topic(broker, topic, 3)
    kcat(broker, "-P", "-t", topic, "-K", ":", stdin=b"".join(b"k%d:first %d\n" % (i, i) for i in range(30)))
    group_args = ["-G", "kcat-group-g", "-e", "-q", "-f", r"%s\n", "-X", "auto.offset.reset=earliest"]
    out = kcat(broker, *group_args, topic).stdout
    assert sorted(out.splitlines()) == sorted(b"first %d" % i for i in range(30))
    kcat(broker, "-P", "-t", topic, "-K", ":", stdin=b"".join(b"k%d:second %d\n" % (i, i) for i in range(12)))
    out = kcat(broker, *group_args, topic).stdout
    assert sorted(out.splitlines()) == sorted(b"second %d" % i for i in range(12))
