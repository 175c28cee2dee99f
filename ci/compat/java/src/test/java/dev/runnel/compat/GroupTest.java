package dev.runnel.compat;

import static dev.runnel.compat.Clients.bytes;
import static dev.runnel.compat.Clients.createTopic;
import static dev.runnel.compat.Clients.unique;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Kafka's Java consumer in groups: the classic protocol (range, cooperative-sticky, static
 * members) and KIP-848's consumer protocol. Rebalance listeners must see exactly the partitions
 * their member owns, and the members of a generation never share one.
 */
@ExtendWith(RunnelBroker.class)
class GroupTest {
  static final int PARTITIONS = 4;
  static final int RECORDS_PER_PARTITION = 25;

  /** One member: its consumer, what its listener was told, and what it read. */
  static final class Member implements ConsumerRebalanceListener {
    final String name;
    final KafkaConsumer<byte[], byte[]> consumer;
    final Set<TopicPartition> owned = new HashSet<>();
    final List<String> events = new ArrayList<>();
    final List<Set<TopicPartition>> revocations = new ArrayList<>();
    final List<Set<TopicPartition>> assignments = new ArrayList<>();
    final List<ConsumerRecord<byte[], byte[]>> records = new ArrayList<>();
    /** What the callbacks saw that they should not have; checked on the test's thread. */
    final List<String> violations = new ArrayList<>();

    Member(String name, String topic, Map<String, Object> config) {
      this.name = name;
      this.consumer = Clients.consumer(config);
      consumer.subscribe(List.of(topic), this);
    }

    @Override
    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
      events.add("revoked " + partitions);
      if (!partitions.isEmpty()) {
        revocations.add(Set.copyOf(partitions));
      }
      if (!owned.containsAll(partitions)) {
        violations.add(name + " revoked " + partitions + " that it did not own " + owned);
      }
      owned.removeAll(partitions);
    }

    @Override
    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
      events.add("assigned " + partitions);
      if (!partitions.isEmpty()) {
        assignments.add(Set.copyOf(partitions));
      }
      for (TopicPartition tp : partitions) {
        if (owned.contains(tp)) {
          violations.add(name + " was assigned " + tp + " that it already owned " + owned);
        }
      }
      owned.addAll(partitions);
    }

    @Override
    public void onPartitionsLost(Collection<TopicPartition> partitions) {
      events.add("lost " + partitions);
      owned.removeAll(partitions);
    }

    void poll() {
      for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
        if (!owned.contains(tp)) {
          violations.add(name + " read " + tp + " while its listener says it owns " + owned);
        }
        records.add(r);
      }
      assertTrue(violations.isEmpty(), violations.toString());
    }

    /** Once a rebalance is over, the listener's view is the consumer's assignment. */
    void assertSettled() {
      assertEquals(consumer.assignment(), owned, name + ": the listener's view vs assignment(), after " + events);
    }

    Set<Integer> partitions() {
      return owned.stream().map(TopicPartition::partition).collect(Collectors.toSet());
    }

    private boolean closed;

    void close() {
      if (!closed) {
        closed = true;
        consumer.close(Duration.ofSeconds(30));
        assertTrue(violations.isEmpty(), violations.toString());
      }
    }

    /** For finally blocks: close without hiding the test's own failure. */
    void closeQuietly() {
      try {
        close();
      } catch (RuntimeException | AssertionError e) {
        System.err.println(name + ": close failed: " + e);
      }
    }
  }

  static void pollAll(String what, List<Member> members, java.util.function.BooleanSupplier done) {
    java.time.Instant deadline = java.time.Instant.now().plus(Clients.TIMEOUT.multipliedBy(2));
    while (!done.getAsBoolean()) {
      if (java.time.Instant.now().isAfter(deadline)) {
        StringBuilder s = new StringBuilder("timed out waiting for " + what + ";");
        for (Member m : members) {
          s.append(' ').append(m.name).append(" owns ").append(m.partitions()).append(" after ").append(m.events).append(';');
        }
        throw new AssertionError(s.toString());
      }
      for (Member m : members) {
        m.poll();
      }
    }
    for (Member m : members) {
      m.assertSettled();
    }
  }

  static String topicWithRecords(String prefix) throws Exception {
    String topic = unique(prefix);
    createTopic(topic, PARTITIONS);
    try (KafkaProducer<byte[], byte[]> p = Clients.producer()) {
      for (int part = 0; part < PARTITIONS; part++) {
        for (int i = 0; i < RECORDS_PER_PARTITION; i++) {
          p.send(new ProducerRecord<>(topic, part, null, bytes(part + ":" + i)));
        }
      }
      p.flush();
    }
    return topic;
  }

  static Set<Integer> all() {
    return IntStream.range(0, PARTITIONS).boxed().collect(Collectors.toSet());
  }

  /** Two members split the partitions between them, disjoint and complete. */
  static boolean split(Member a, Member b) {
    Set<Integer> pa = a.partitions();
    Set<Integer> pb = b.partitions();
    Set<Integer> union = new HashSet<>(pa);
    union.addAll(pb);
    return pa.size() == PARTITIONS / 2 && pb.size() == PARTITIONS / 2 && union.equals(all());
  }

  /** Every record of every partition was read by someone (at least once). */
  static void everyRecordRead(String topic, List<Member> members) {
    Map<Integer, Set<String>> seen = new HashMap<>();
    for (Member m : members) {
      for (ConsumerRecord<byte[], byte[]> r : m.records) {
        seen.computeIfAbsent(r.partition(), k -> new HashSet<>()).add(Clients.str(r.value()));
      }
    }
    for (int part = 0; part < PARTITIONS; part++) {
      assertEquals(RECORDS_PER_PARTITION, seen.getOrDefault(part, Set.of()).size(), "records of " + topic + "-" + part + " read");
    }
  }

  static Map<String, Object> classic(String group, Class<?> assignor) {
    Map<String, Object> c = new HashMap<>();
    c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
    c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor.getName());
    c.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 60_000);
    c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1_000);
    c.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, 120_000);
    return c;
  }

  @Test
  void classicRangeAssignorSplitsAndHandsOverOnLeave() throws Exception {
    String topic = topicWithRecords("java-range");
    String group = unique("java-range-group");
    Member a = new Member("a", topic, classic(group, RangeAssignor.class));
    Member b = new Member("b", topic, classic(group, RangeAssignor.class));
    try {
      pollAll("a range split", List.of(a, b), () -> split(a, b));
      // The range assignor gives each member a contiguous range of one topic's partitions.
      Set<Set<Integer>> ranges = Set.of(a.partitions(), b.partitions());
      assertEquals(Set.of(Set.of(0, 1), Set.of(2, 3)), ranges);
      pollAll("every record read", List.of(a, b), () -> a.records.size() + b.records.size() >= PARTITIONS * RECORDS_PER_PARTITION);
      everyRecordRead(topic, List.of(a, b));

      b.close();
      int before = a.revocations.size();
      pollAll("a owning every partition after b left", List.of(a), () -> a.partitions().equals(all()));
      // Eager: a gave up everything it had, then got all of it back.
      assertTrue(a.revocations.size() > before, "eager rebalance revokes first: " + a.events);
      assertEquals(PARTITIONS, a.assignments.get(a.assignments.size() - 1).size(), "the last assignment is all: " + a.events);
    } finally {
      a.closeQuietly();
      b.closeQuietly();
    }
  }

  @Test
  void classicCooperativeStickyMovesOnlyWhatItMust() throws Exception {
    String topic = topicWithRecords("java-coop");
    String group = unique("java-coop-group");
    Member a = new Member("a", topic, classic(group, CooperativeStickyAssignor.class));
    Member b = null;
    try {
      pollAll("a owning every partition alone", List.of(a), () -> a.partitions().equals(all()));
      assertTrue(a.revocations.isEmpty(), "nothing to revoke yet: " + a.events);

      Member bb = new Member("b", topic, classic(group, CooperativeStickyAssignor.class));
      b = bb;
      pollAll("a cooperative split", List.of(a, bb), () -> split(a, bb));
      // Incremental: a gave up exactly the two partitions b got, and kept the others throughout.
      assertEquals(1, a.revocations.size(), "one incremental revocation: " + a.events);
      Set<Integer> revoked = a.revocations.get(0).stream().map(TopicPartition::partition).collect(Collectors.toSet());
      assertEquals(bb.partitions(), revoked, "a revoked exactly what b was assigned: " + a.events + " / " + bb.events);
      assertEquals(1, a.assignments.size(), "a was never assigned again: " + a.events);

      pollAll("every record read", List.of(a, bb), () -> everyPartitionReadBy(List.of(a, bb)));
      everyRecordRead(topic, List.of(a, bb));

      bb.close();
      pollAll("a owning every partition after b left", List.of(a), () -> a.partitions().equals(all()));
      assertEquals(1, a.revocations.size(), "taking over revokes nothing: " + a.events);
      assertEquals(revoked, a.assignments.get(a.assignments.size() - 1).stream().map(TopicPartition::partition).collect(Collectors.toSet()),
          "a was assigned back exactly b's partitions: " + a.events);
    } finally {
      a.closeQuietly();
      if (b != null) {
        b.closeQuietly();
      }
    }
  }

  static boolean everyPartitionReadBy(List<Member> members) {
    Map<Integer, Set<String>> seen = new HashMap<>();
    for (Member m : members) {
      for (ConsumerRecord<byte[], byte[]> r : m.records) {
        seen.computeIfAbsent(r.partition(), k -> new HashSet<>()).add(Clients.str(r.value()));
      }
    }
    return IntStream.range(0, PARTITIONS).allMatch(p -> seen.getOrDefault(p, Set.of()).size() == RECORDS_PER_PARTITION);
  }

  @Test
  void staticMemberRestartKeepsItsAssignmentWithoutARebalance() throws Exception {
    String topic = topicWithRecords("java-static");
    String group = unique("java-static-group");
    Map<String, Object> ca = classic(group, RangeAssignor.class);
    ca.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-a");
    Map<String, Object> cb = classic(group, RangeAssignor.class);
    cb.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-b");
    Member a = new Member("a", topic, ca);
    Member b = new Member("b", topic, cb);
    Member b2 = null;
    try {
      pollAll("a static split", List.of(a, b), () -> split(a, b));
      Set<Integer> bHad = b.partitions();
      Set<Integer> aHad = a.partitions();
      int aEvents = a.events.size();

      // A static member's close does not leave the group; the same instance id comes back.
      b.close();
      Member restarted = new Member("b2", topic, cb);
      b2 = restarted;
      pollAll("the restarted static member assigned", List.of(a, restarted), () -> !restarted.partitions().isEmpty());
      assertEquals(bHad, restarted.partitions(), "the restarted instance gets its old partitions: " + restarted.events);
      // Poll a little longer: no rebalance reaches a.
      for (int i = 0; i < 10; i++) {
        a.poll();
        restarted.poll();
      }
      assertEquals(aHad, a.partitions());
      assertEquals(aEvents, a.events.size(), "a saw no rebalance: " + a.events);
      assertEquals(bHad, restarted.partitions());
    } finally {
      a.closeQuietly();
      b.closeQuietly();
      if (b2 != null) {
        b2.closeQuietly();
      }
    }
  }

  static Map<String, Object> consumerProtocol(String group) {
    Map<String, Object> c = new HashMap<>();
    c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
    return c;
  }

  @Test
  void consumerProtocolSplitsAndHandsOverOnLeave() throws Exception {
    String topic = topicWithRecords("java-kip848");
    String group = unique("java-kip848-group");
    Member a = new Member("a", topic, consumerProtocol(group));
    Member b = null;
    try {
      pollAll("a owning every partition alone", List.of(a), () -> a.partitions().equals(all()));
      Member bb = new Member("b", topic, consumerProtocol(group));
      b = bb;
      pollAll("a KIP-848 split", List.of(a, bb), () -> split(a, bb));
      // The consumer protocol is incremental too: a only gave up what b got.
      Set<Integer> revoked = a.revocations.stream().flatMap(Set::stream).map(TopicPartition::partition).collect(Collectors.toSet());
      assertEquals(bb.partitions(), revoked, "a revoked exactly what b got: " + a.events + " / " + bb.events);

      pollAll("every record read", List.of(a, bb), () -> everyPartitionReadBy(List.of(a, bb)));
      everyRecordRead(topic, List.of(a, bb));

      // Each member commits the end of the partitions it owns (OffsetCommit with its member
      // epoch); the group then holds all four.
      for (Member m : List.of(a, bb)) {
        Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> ends = new HashMap<>();
        m.owned.forEach(tp -> ends.put(tp, new org.apache.kafka.clients.consumer.OffsetAndMetadata(RECORDS_PER_PARTITION)));
        m.consumer.commitSync(ends, Duration.ofSeconds(60));
      }
      Set<TopicPartition> tps = IntStream.range(0, PARTITIONS).mapToObj(p -> new TopicPartition(topic, p)).collect(Collectors.toSet());
      Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> committed = a.consumer.committed(tps);
      for (TopicPartition tp : tps) {
        assertTrue(committed.get(tp) != null, "committed " + tp + ": " + committed);
        assertEquals(RECORDS_PER_PARTITION, committed.get(tp).offset(), "committed " + tp);
      }

      bb.close();
      pollAll("a owning every partition after b left", List.of(a), () -> a.partitions().equals(all()));
    } finally {
      a.closeQuietly();
      if (b != null) {
        b.closeQuietly();
      }
    }
  }

  @Test
  void consumerProtocolStaticMemberRestartKeepsItsAssignment() throws Exception {
    String topic = topicWithRecords("java-kip848-static");
    String group = unique("java-kip848-static-group");
    Map<String, Object> ca = consumerProtocol(group);
    ca.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-a");
    Map<String, Object> cb = consumerProtocol(group);
    cb.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-b");
    Member a = new Member("a", topic, ca);
    Member b = new Member("b", topic, cb);
    Member b2 = null;
    try {
      pollAll("a static KIP-848 split", List.of(a, b), () -> split(a, b));
      Set<Integer> bHad = b.partitions();
      Set<Integer> aHad = a.partitions();
      b.close();
      Member restarted = new Member("b2", topic, cb);
      b2 = restarted;
      pollAll("the restarted static member assigned", List.of(a, restarted), () -> restarted.partitions().equals(bHad));
      // While b was away its partitions stayed reserved for it: a never got them.
      assertEquals(aHad, a.partitions(), "a kept its own partitions: " + a.events);
      assertEquals(1, a.assignments.size(), "a was never assigned more: " + a.events);
    } finally {
      a.closeQuietly();
      b.closeQuietly();
      if (b2 != null) {
        b2.closeQuietly();
      }
    }
  }
}
