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
}
