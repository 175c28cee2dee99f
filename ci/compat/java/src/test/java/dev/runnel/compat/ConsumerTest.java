package dev.runnel.compat;

import static dev.runnel.compat.Clients.bytes;
import static dev.runnel.compat.Clients.createTopic;
import static dev.runnel.compat.Clients.pollExactly;
import static dev.runnel.compat.Clients.str;
import static dev.runnel.compat.Clients.unique;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Kafka's Java consumer with assign(): seeks and committed offsets. */
@ExtendWith(RunnelBroker.class)
class ConsumerTest {

  /** Produces `n` records "v0".."v(n-1)" to partition 0 with CreateTime timestamps base + 1000 * i. */
  static void produce(String topic, int n, long base) throws Exception {
    try (KafkaProducer<byte[], byte[]> p = Clients.producer()) {
      for (int i = 0; i < n; i++) {
        p.send(new ProducerRecord<>(topic, 0, base + 1000L * i, null, bytes("v" + i)));
      }
      p.flush();
    }
  }

  @Test
  void seekToBeginningEndAndOffset() throws Exception {
    String topic = unique("java-seek");
    createTopic(topic, 1);
    produce(topic, 10, System.currentTimeMillis());
    TopicPartition tp = new TopicPartition(topic, 0);
    try (KafkaConsumer<byte[], byte[]> c = Clients.consumer()) {
      c.assign(List.of(tp));

      c.seekToEnd(List.of(tp));
      assertEquals(10, c.position(tp), "seekToEnd lands on the log end offset");
      assertTrue(c.poll(Duration.ofMillis(1000)).isEmpty(), "nothing after the end");
      produce(topic, 2, System.currentTimeMillis());
      List<ConsumerRecord<byte[], byte[]>> tail = pollExactly(c, 2);
      assertEquals(10, tail.get(0).offset());
      assertEquals("v0", str(tail.get(0).value()));
      assertEquals(11, tail.get(1).offset());

      c.seekToBeginning(List.of(tp));
      assertEquals(0, c.position(tp), "seekToBeginning lands on the log start offset");
      List<ConsumerRecord<byte[], byte[]>> all = pollExactly(c, 12);
      for (int i = 0; i < 12; i++) {
        assertEquals(i, all.get(i).offset());
      }

      c.seek(tp, 5);
      ConsumerRecord<byte[], byte[]> fifth = pollExactly(c, 7).get(0);
      assertEquals(5, fifth.offset());
      assertEquals("v5", str(fifth.value()));

      assertEquals(Map.of(tp, 0L), c.beginningOffsets(List.of(tp)));
      assertEquals(Map.of(tp, 12L), c.endOffsets(List.of(tp)));
    }
  }

  @Test
  void offsetsForTimesThenSeek() throws Exception {
    String topic = unique("java-times");
    createTopic(topic, 1);
    long base = 1_700_000_000_000L;
    produce(topic, 10, base);
    TopicPartition tp = new TopicPartition(topic, 0);
    try (KafkaConsumer<byte[], byte[]> c = Clients.consumer()) {
      c.assign(List.of(tp));
      // The first record whose timestamp is at or after the asked time.
      Map<TopicPartition, OffsetAndTimestamp> at = c.offsetsForTimes(Map.of(tp, base + 2500));
      assertEquals(3, at.get(tp).offset());
      assertEquals(base + 3000, at.get(tp).timestamp());
      Map<TopicPartition, OffsetAndTimestamp> exact = c.offsetsForTimes(Map.of(tp, base + 7000));
      assertEquals(7, exact.get(tp).offset());
      Map<TopicPartition, OffsetAndTimestamp> before = c.offsetsForTimes(Map.of(tp, 0L));
      assertEquals(0, before.get(tp).offset());
      Map<TopicPartition, OffsetAndTimestamp> after = c.offsetsForTimes(Map.of(tp, base + 1_000_000));
      assertNull(after.get(tp), "no record at or after a time past the last one");

      c.seek(tp, at.get(tp).offset());
      List<ConsumerRecord<byte[], byte[]>> got = pollExactly(c, 7);
      assertEquals(3, got.get(0).offset());
      assertEquals(base + 3000, got.get(0).timestamp());
      assertEquals("v3", str(got.get(0).value()));
    }
  }

  @Test
  void commitSyncAndAsyncReadBackThroughCommitted() throws Exception {
    String topic = unique("java-commit");
    createTopic(topic, 2);
    try (KafkaProducer<byte[], byte[]> p = Clients.producer()) {
      for (int i = 0; i < 20; i++) {
        p.send(new ProducerRecord<>(topic, i % 2, null, bytes("r" + i)));
      }
      p.flush();
    }
    String group = unique("java-commit-group");
    TopicPartition p0 = new TopicPartition(topic, 0);
    TopicPartition p1 = new TopicPartition(topic, 1);
    Map<String, Object> conf = Map.of(ConsumerConfig.GROUP_ID_CONFIG, group);
    try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(conf)) {
      c.assign(List.of(p0, p1));
      Map<TopicPartition, OffsetAndMetadata> before = c.committed(Set.of(p0, p1));
      assertNull(before.get(p0), "nothing committed yet");
      assertNull(before.get(p1));

      c.commitSync(Map.of(p0, new OffsetAndMetadata(4, "sync metadata")));
      Map<TopicPartition, OffsetAndMetadata> sync = c.committed(Set.of(p0, p1));
      assertEquals(4, sync.get(p0).offset());
      assertEquals("sync metadata", sync.get(p0).metadata());
      assertNull(sync.get(p1));

      AtomicReference<Exception> asyncError = new AtomicReference<>();
      AtomicReference<Map<TopicPartition, OffsetAndMetadata>> asyncDone = new AtomicReference<>();
      c.commitAsync(Map.of(p1, new OffsetAndMetadata(7, "async metadata")), (offsets, e) -> {
        asyncDone.set(offsets);
        asyncError.set(e);
      });
      // The callback runs inside a later consumer call; poll until it has.
      Clients.pollUntil("the commitAsync callback", List.of(c), () -> asyncDone.get() != null, null);
      assertNull(asyncError.get(), "commitAsync failed");
      assertEquals(7, asyncDone.get().get(p1).offset());
      Map<TopicPartition, OffsetAndMetadata> both = c.committed(Set.of(p0, p1));
      assertEquals(4, both.get(p0).offset());
      assertEquals(7, both.get(p1).offset());
      assertEquals("async metadata", both.get(p1).metadata());

      // A commit moves backwards as well as forwards (Kafka stores what it is given).
      c.commitSync(Map.of(p0, new OffsetAndMetadata(2)));
      assertEquals(2, c.committed(Set.of(p0)).get(p0).offset());
    }
    // A fresh consumer in the group starts where the group committed.
    try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(conf)) {
      c.assign(List.of(p0, p1));
      assertEquals(2, c.position(p0));
      assertEquals(7, c.position(p1));
      Map<Integer, Long> firstOffset = new HashMap<>();
      for (ConsumerRecord<byte[], byte[]> r : pollExactly(c, (10 - 2) + (10 - 7))) {
        firstOffset.putIfAbsent(r.partition(), r.offset());
      }
      assertEquals(Map.of(0, 2L, 1, 7L), firstOffset);
    }
  }

  @Test
  void commitSyncWithoutArgumentsCommitsThePositions() throws Exception {
    String topic = unique("java-commit-pos");
    createTopic(topic, 1);
    produce(topic, 6, System.currentTimeMillis());
    String group = unique("java-commit-pos-group");
    TopicPartition tp = new TopicPartition(topic, 0);
    try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
      c.assign(List.of(tp));
      pollExactly(c, 6);
      c.commitSync(Duration.ofSeconds(60));
      OffsetAndMetadata committed = c.committed(Set.of(tp)).get(tp);
      assertNotNull(committed);
      assertEquals(6, committed.offset());
      assertTrue(committed.leaderEpoch().isPresent(), "the commit carries the leader epoch the consumer saw");
    }
  }

  @Test
  void outOfRangeWithResetNoneIsReportedAndResetEarliestRecovers() throws Exception {
    String topic = unique("java-oor");
    createTopic(topic, 1);
    produce(topic, 10, System.currentTimeMillis());
    TopicPartition tp = new TopicPartition(topic, 0);
    try (org.apache.kafka.clients.admin.Admin admin = Clients.admin()) {
      Clients.get(admin.deleteRecords(Map.of(tp, org.apache.kafka.clients.admin.RecordsToDelete.beforeOffset(4))).all());
    }
    try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(Map.of(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none"))) {
      c.assign(List.of(tp));
      c.seek(tp, 2); // below the new log start
      org.apache.kafka.clients.consumer.OffsetOutOfRangeException e = org.junit.jupiter.api.Assertions.assertThrows(
          org.apache.kafka.clients.consumer.OffsetOutOfRangeException.class, () -> {
            for (int i = 0; i < 120; i++) {
              c.poll(Duration.ofMillis(500));
            }
          });
      assertEquals(Map.of(tp, 2L), e.offsetOutOfRangePartitions());
      // With no position and no committed offset, reset=none refuses to guess.
      org.junit.jupiter.api.Assertions.assertThrows(org.apache.kafka.clients.consumer.NoOffsetForPartitionException.class, () -> {
        try (KafkaConsumer<byte[], byte[]> fresh = Clients.consumer(Map.of(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none",
            ConsumerConfig.GROUP_ID_CONFIG, unique("java-oor-group")))) {
          fresh.assign(List.of(tp));
          fresh.poll(Duration.ofSeconds(10));
        }
      });
    }
    try (KafkaConsumer<byte[], byte[]> c = Clients.consumer()) {
      c.assign(List.of(tp));
      c.seek(tp, 2);
      // auto.offset.reset=earliest: the consumer moves to the log start and reads on.
      List<ConsumerRecord<byte[], byte[]>> got = pollExactly(c, 6);
      assertEquals(4, got.get(0).offset());
      assertEquals("v4", str(got.get(0).value()));
    }
  }

  @Test
  void pauseAndResumeStopAndRestartOnePartition() throws Exception {
    String topic = unique("java-pause");
    createTopic(topic, 2);
    try (KafkaProducer<byte[], byte[]> p = Clients.producer()) {
      for (int i = 0; i < 10; i++) {
        p.send(new ProducerRecord<>(topic, i % 2, null, bytes("r" + i)));
      }
      p.flush();
    }
    TopicPartition p0 = new TopicPartition(topic, 0);
    TopicPartition p1 = new TopicPartition(topic, 1);
    try (KafkaConsumer<byte[], byte[]> c = Clients.consumer()) {
      c.assign(List.of(p0, p1));
      c.seekToBeginning(List.of(p0, p1));
      c.pause(List.of(p1));
      List<ConsumerRecord<byte[], byte[]>> got = pollExactly(c, 5);
      assertTrue(got.stream().allMatch(r -> r.partition() == 0), "only the unpaused partition is read");
      assertEquals(Set.of(p1), c.paused());
      c.resume(List.of(p1));
      List<ConsumerRecord<byte[], byte[]>> rest = pollExactly(c, 5);
      assertTrue(rest.stream().allMatch(r -> r.partition() == 1));
      assertEquals(0, rest.get(0).offset());
    }
  }

  @Test
  void autoCommitCommitsWhatWasPolled() throws Exception {
    String topic = unique("java-autocommit");
    createTopic(topic, 1);
    produce(topic, 5, System.currentTimeMillis());
    String group = unique("java-autocommit-group");
    TopicPartition tp = new TopicPartition(topic, 0);
    try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(Map.of(
        ConsumerConfig.GROUP_ID_CONFIG, group,
        ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, true,
        ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, 200))) {
      c.subscribe(List.of(topic));
      Clients.pollUntil("five records", List.of(c), () -> c.assignment().size() == 1 && c.position(tp) == 5, null);
      Clients.pollUntil("the auto commit", List.of(c), () -> {
        OffsetAndMetadata om = c.committed(Set.of(tp)).get(tp);
        return om != null && om.offset() == 5;
      }, null);
    }
    try (org.apache.kafka.clients.admin.Admin admin = Clients.admin()) {
      assertEquals(5, Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()).get(tp).offset());
    }
  }

  @Test
  void producingToAnUnknownTopicCreatesIt() throws Exception {
    String topic = unique("java-auto-created");
    try (KafkaProducer<byte[], byte[]> p = Clients.producer()) {
      assertEquals(0, p.send(new ProducerRecord<>(topic, bytes("k"), bytes("first"))).get().offset());
    }
    try (org.apache.kafka.clients.admin.Admin admin = Clients.admin()) {
      var d = Clients.get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
      assertTrue(d.partitions().size() >= 1);
    }
    assertEquals("first", str(Clients.readFromStart(topic, 1).get(0).value()));
  }
}
