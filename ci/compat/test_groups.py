"""Consumer groups through confluent-kafka (librdkafka): the classic protocol with the range,
cooperative-sticky and static-membership flavours, committed offsets, and the admin APIs."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from conftest import (
    OP_TIMEOUT,
    admin_client,
    create_topic,
    produce_all,
    producer,
    unique,
    wait_until,
)

PARTITIONS = 6


class Member:
    """A group consumer driven from the test's thread, recording every (re)assignment."""

    def __init__(self, broker, group: str, topic: str, **config):
        base = {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
            "enable.partition.eof": False,
        }
        base.update(config)
        self.cooperative = base.get("partition.assignment.strategy") == "cooperative-sticky"
        self.consumer = Consumer(base)
        self.assigned: set[int] = set()
        self.revoked: list[set[int]] = []
        self.assigns: list[set[int]] = []
        self.records: list[tuple[int, int, bytes]] = []
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer, partitions):
        got = {p.partition for p in partitions}
        self.assigns.append(got)
        if self.cooperative:
            self.assigned |= got
        else:
            self.assigned = got

    def _on_revoke(self, consumer, partitions):
        lost = {p.partition for p in partitions}
        self.revoked.append(lost)
        self.assigned -= lost

    def poll(self, timeout: float = 0.1):
        m = self.consumer.poll(timeout)
        if m is None:
            return None
        if m.error():
            raise KafkaException(m.error())
        self.records.append((m.partition(), m.offset(), m.value()))
        self.consumer.commit(message=m, asynchronous=False)
        return m

    def close(self):
        self.consumer.close()


def poll_all(members: list[Member], until, what: str, timeout: float = OP_TIMEOUT):
    def step():
        for m in members:
            m.poll(0.05)
        return until()

    wait_until(step, timeout, what, interval=0)


def balanced(members: list[Member], partitions: int = PARTITIONS) -> bool:
    sets = [m.assigned for m in members]
    union = set().union(*sets)
    sizes = sorted(len(s) for s in sets)
    return (
        union == set(range(partitions))
        and sum(sizes) == partitions
        and sizes[-1] - sizes[0] <= 1
    )


def produce_values(broker, topic: str, values: list[bytes]):
    produce_all(producer(broker), [dict(topic=topic, value=v, key=v) for v in values])


def test_three_consumers_share_six_partitions_and_a_leaver_hands_over(broker):
    """Three consumers of one group split six partitions two each; every record is delivered
    exactly once; when one leaves, its partitions move to the other two well before its session
    would have expired (LeaveGroup, not a timeout), and later records are still delivered once."""
    topic = unique("groups")
    group = unique("g")
    create_topic(broker, topic, PARTITIONS)
    members = [Member(broker, group, topic, **{"session.timeout.ms": 30000}) for _ in range(3)]
    try:
        poll_all(members, lambda: balanced(members) and all(len(m.assigned) == 2 for m in members),
                 "three members with two partitions each")
        first = [b"first-%d" % i for i in range(300)]
        produce_values(broker, topic, first)
        poll_all(members, lambda: sum(len(m.records) for m in members) >= len(first), "the first records")
        seen = [r for m in members for r in m.records]
        assert sorted(v for _, _, v in seen) == sorted(first), "each record exactly once"
        for m in members:
            assert {p for p, _, _ in m.records} <= m.assigned, "records only from owned partitions"

        leaver, stay = members[0], members[1:]
        started = time.monotonic()
        leaver.close()
        members = stay
        poll_all(stay, lambda: balanced(stay) and all(len(m.assigned) == 3 for m in stay),
                 "the two remaining members with three partitions each")
        assert time.monotonic() - started < 25, "handover must come from LeaveGroup, not the 30 s session timeout"
        for m in stay:
            m.records.clear()
        second = [b"second-%d" % i for i in range(300)]
        produce_values(broker, topic, second)
        poll_all(stay, lambda: sum(len(m.records) for m in stay) >= len(second), "the second records")
        time.sleep(1)
        for m in stay:
            m.poll(0.2)
        assert sorted(v for m in stay for _, _, v in m.records) == sorted(second)
    finally:
        for m in members:
            m.close()


def test_cooperative_sticky_moves_only_what_it_must(broker):
    """With cooperative-sticky, a third member joining a balanced pair takes one partition from
    each; nothing else is revoked, and nobody ever loses a partition it keeps."""
    topic = unique("coop")
    group = unique("g")
    create_topic(broker, topic, PARTITIONS)
    config = {"partition.assignment.strategy": "cooperative-sticky"}
    pair = [Member(broker, group, topic, **config) for _ in range(2)]
    members = list(pair)
    try:
        poll_all(pair, lambda: balanced(pair) and all(len(m.assigned) == 3 for m in pair), "a balanced pair")
        before = [set(m.assigned) for m in pair]
        for m in pair:
            m.revoked.clear()
        third = Member(broker, group, topic, **config)
        members.append(third)
        trio = pair + [third]
        poll_all(trio, lambda: balanced(trio) and all(len(m.assigned) == 2 for m in trio), "a balanced trio")
        # Let any further (wrong) rebalance show itself.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for m in trio:
                m.poll(0.05)
        for m, had in zip(pair, before):
            lost = set().union(*m.revoked) if m.revoked else set()
            assert len(lost) == 1, f"each old member gives up exactly one partition, not {lost}"
            assert m.assigned == had - lost
        assert third.assigned == set().union(*(set().union(*m.revoked) for m in pair))
    finally:
        for m in members:
            m.close()


def test_static_member_returns_without_a_rebalance(broker):
    """A static member (group.instance.id) that restarts within its session timeout gets its
    partitions back, and the other member is not rebalanced at all."""
    topic = unique("static")
    group = unique("g")
    create_topic(broker, topic, PARTITIONS)
    config = {"session.timeout.ms": 30000}
    a = Member(broker, group, topic, **{"group.instance.id": "a"}, **config)
    b = Member(broker, group, topic, **{"group.instance.id": "b"}, **config)
    members = [a, b]
    try:
        poll_all(members, lambda: balanced(members) and all(len(m.assigned) == 3 for m in members), "a balanced pair")
        settle = time.monotonic() + 2
        while time.monotonic() < settle:
            for m in members:
                m.poll(0.05)
        had = set(b.assigned)
        rebalances_of_a = len(a.assigns)
        b.close()  # a static member's close sends no LeaveGroup
        members = [a]
        b2 = Member(broker, group, topic, **{"group.instance.id": "b"}, **config)
        members = [a, b2]
        poll_all(members, lambda: b2.assigned == had, "the restarted static member to get its partitions back",
                 timeout=25)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for m in members:
                m.poll(0.05)
        assert len(a.assigns) == rebalances_of_a, "the other member was rebalanced"
        assert b2.assigned == had
    finally:
        for m in members:
            m.close()


def test_committed_offsets_resume_and_survive_a_broker_restart(broker):
    """A consumer commits; a new consumer of the same group resumes after the commit; the
    committed offsets, with their metadata, are still there after the broker restarts."""
    topic = unique("resume")
    group = unique("g")
    create_topic(broker, topic, 2)
    produce_all(producer(broker), [dict(topic=topic, partition=i % 2, value=b"%d" % i) for i in range(40)])
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
        got = 0
        while got < 15:
            m = c.poll(1.0)
            if m is not None and not m.error() and m.partition() == 0:
                got += 1
        committed = [TopicPartition(topic, 0, 15, metadata="after fifteen"),
                     TopicPartition(topic, 1, 7)]
        c.commit(offsets=committed, asynchronous=False)
        back = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=OP_TIMEOUT)
        assert [(tp.partition, tp.offset) for tp in back] == [(0, 15), (1, 7)]
        assert back[0].metadata == "after fifteen"
    finally:
        c.close()

    code = broker.stop()
    assert code == 0
    broker.start()

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        back = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=OP_TIMEOUT)
        assert [(tp.partition, tp.offset) for tp in back] == [(0, 15), (1, 7)]
        assert back[0].metadata == "after fifteen"
        c.subscribe([topic])
        firsts = {}
        deadline = time.monotonic() + OP_TIMEOUT
        while len(firsts) < 2 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                firsts.setdefault(m.partition(), m.offset())
        assert firsts == {0: 15, 1: 7}, "a subscribing member starts at the committed offsets"
    finally:
        c.close()


def test_admin_lists_describes_alters_and_deletes_groups(broker):
    """AdminClient: list (with a state filter), describe members and assignments, list and
    alter committed offsets, and delete: refused while members are active, done once empty."""
    from confluent_kafka import ConsumerGroupState

    topic = unique("admin")
    group = unique("g")
    create_topic(broker, topic, 2)
    produce_all(producer(broker), [dict(topic=topic, partition=i % 2, value=b"%d" % i) for i in range(10)])
    admin = admin_client(broker)
    m = Member(broker, group, topic, **{"client.id": "describe-me"})
    try:
        poll_all([m], lambda: m.assigned == {0, 1}, "the member to own both partitions")
        listed = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(timeout=OP_TIMEOUT)
        assert group in {g.group_id for g in listed.valid}
        empty = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(timeout=OP_TIMEOUT)
        assert group not in {g.group_id for g in empty.valid}
        described = admin.describe_consumer_groups([group])[group].result(timeout=OP_TIMEOUT)
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor == "range"
        [member] = described.members
        assert member.client_id == "describe-me"
        assert member.host.lstrip("/") == "127.0.0.1"
        assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1]
        refused = admin.delete_consumer_groups([group])[group]
        try:
            refused.result(timeout=OP_TIMEOUT)
            raise AssertionError("deleting a group with an active member must fail")
        except KafkaException as e:
            assert "NON_EMPTY_GROUP" in str(e) or e.args[0].name() == "NON_EMPTY_GROUP"
    finally:
        m.close()

    wait_until(lambda: admin.describe_consumer_groups([group])[group].result(timeout=OP_TIMEOUT).state
               == ConsumerGroupState.EMPTY, OP_TIMEOUT, "the group to become empty")
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 4)])
    admin.alter_consumer_group_offsets([request])[group].result(timeout=OP_TIMEOUT)
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=OP_TIMEOUT)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 3), (1, 4)]
    admin.delete_consumer_groups([group])[group].result(timeout=OP_TIMEOUT)
    listed = admin.list_consumer_groups().result(timeout=OP_TIMEOUT)
    assert group not in {g.group_id for g in listed.valid}
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])
    [tp] = offsets[group].result(timeout=OP_TIMEOUT).topic_partitions
    assert tp.offset < 0, "a deleted group has no committed offsets"


def test_consumer_protocol_kip848_end_to_end(broker):
    """group.protocol=consumer (KIP-848): the broker's assignor spreads six partitions over
    three members, every record arrives exactly once, a leaving member's partitions move to
    the others, the admin client describes the group through ConsumerGroupDescribe, and
    commits are fenced by member epoch like any other."""
    from confluent_kafka import ConsumerGroupState, ConsumerGroupType

    topic = unique("kip848")
    group = unique("g")
    create_topic(broker, topic, PARTITIONS)

    def member():
        m = Member.__new__(Member)
        base = {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
        m.cooperative = True  # the consumer protocol hands out incremental changes
        m.consumer = Consumer(base)
        m.assigned, m.revoked, m.assigns, m.records = set(), [], [], []
        m.consumer.subscribe([topic], on_assign=m._on_assign, on_revoke=m._on_revoke)
        return m

    members = [member() for _ in range(3)]
    try:
        poll_all(members, lambda: balanced(members) and all(len(m.assigned) == 2 for m in members),
                 "three KIP-848 members with two partitions each")
        values = [b"kip848-%d" % i for i in range(300)]
        produce_values(broker, topic, values)
        poll_all(members, lambda: sum(len(m.records) for m in members) >= len(values), "every record")
        assert sorted(v for m in members for _, _, v in m.records) == sorted(values)

        admin = admin_client(broker)
        described = admin.describe_consumer_groups([group])[group].result(timeout=OP_TIMEOUT)
        assert described.type == ConsumerGroupType.CONSUMER
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor == "uniform"
        assert len(described.members) == 3
        owned = sorted(tp.partition for mem in described.members for tp in mem.assignment.topic_partitions)
        assert owned == list(range(PARTITIONS))

        leaver = members.pop(0)
        leaver.close()
        poll_all(members, lambda: balanced(members) and all(len(m.assigned) == 3 for m in members),
                 "the remaining two with three partitions each")
        for m in members:
            m.records.clear()
        more = [b"after-%d" % i for i in range(100)]
        produce_values(broker, topic, more)
        poll_all(members, lambda: sum(len(m.records) for m in members) >= len(more), "records after the leave")
        assert sorted(v for m in members for _, _, v in m.records) == sorted(more)
    finally:
        for m in members:
            m.close()


def test_consumer_protocol_regex_subscription_follows_new_topics(broker):
    """group.protocol=consumer with subscribe(["^prefix.*"]): the broker matches the pattern
    (KIP-848 server-side regex) against whole topic names, so records of a matching topic
    created after the subscription arrive, and those of a topic that does not match never do."""
    prefix = unique("re")
    group = unique("g")
    first, later, other = f"{prefix}-a", f"{prefix}-b", unique("elsewhere")
    create_topic(broker, first, 2)
    create_topic(broker, other, 1)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "group.protocol": "consumer",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "enable.partition.eof": False,
                  "topic.metadata.refresh.interval.ms": 1000})
    try:
        c.subscribe([f"^{prefix}-.*"])
        create_topic(broker, later, 1)
        produce_all(producer(broker), [dict(topic=t, value=t.encode() + b"-%d" % i)
                                       for t in (first, later, other) for i in range(5)])
        got = set()

        def step():
            m = c.poll(0.2)
            if m is not None and not m.error():
                got.add((m.topic(), m.value()))
            return {t for t, _ in got} == {first, later} and len(got) == 10

        wait_until(step, OP_TIMEOUT, "the records of both matching topics", interval=0)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            step()
        assert all(t != other for t, _ in got), "a topic the pattern does not match was consumed"
        admin = admin_client(broker)  # kept alive: its futures die with it
        described = admin.describe_consumer_groups([group])[group].result(timeout=OP_TIMEOUT)
        owned = {(tp.topic, tp.partition) for m in described.members for tp in m.assignment.topic_partitions}
        assert owned == {(first, 0), (first, 1), (later, 0)}
    finally:
        c.close()
