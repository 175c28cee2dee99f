package dev.runnel.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/** Client factories and waits shared by the tests. Every wait is generous: two shared cores. */
final class Clients {
  static final Duration TIMEOUT = Duration.ofSeconds(60);

  private Clients() {}

  /** A topic or group name no other test uses. */
  static String unique(String prefix) {
    return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  static Admin admin() {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, RunnelBroker.bootstrap());
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
    p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
    return Admin.create(p);
  }

  static KafkaProducer<byte[], byte[]> producer(Map<String, Object> extra) {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, RunnelBroker.bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120_000);
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 60_000);
    p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
    p.putAll(extra);
    return new KafkaProducer<>(p);
  }

  static KafkaProducer<byte[], byte[]> producer() {
    return producer(Map.of());
  }

  /** A consumer for assign(): a group id only so that commits are possible. */
  static KafkaConsumer<byte[], byte[]> consumer(Map<String, Object> extra) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, RunnelBroker.bootstrap());
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
    p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
    p.putAll(extra);
    return new KafkaConsumer<>(p);
  }

  static KafkaConsumer<byte[], byte[]> consumer() {
    return consumer(Map.of());
  }

  static <T> T get(KafkaFuture<T> f) throws InterruptedException, ExecutionException {
    try {
      return f.get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (java.util.concurrent.TimeoutException e) {
      throw new AssertionError("no answer within " + TIMEOUT, e);
    }
  }

  /** Creates a topic and waits until the admin client describes it with every partition led. */
  static void createTopic(Admin admin, String topic, int partitions, Map<String, String> configs) throws Exception {
    get(admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1).configs(configs))).all());
    waitUntil("topic " + topic + " with " + partitions + " led partitions", () -> {
      try {
        TopicDescription d = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
        return d.partitions().size() == partitions && d.partitions().stream().allMatch(p -> p.leader() != null && p.leader().id() >= 0);
      } catch (Exception e) {
        return false;
      }
    });
  }

  static void createTopic(String topic, int partitions, Map<String, String> configs) throws Exception {
    try (Admin admin = admin()) {
      createTopic(admin, topic, partitions, configs);
    }
  }

  static void createTopic(String topic, int partitions) throws Exception {
    createTopic(topic, partitions, Map.of());
  }

  static void waitUntil(String what, BooleanSupplier condition) {
    Instant deadline = Instant.now().plus(TIMEOUT);
    while (!condition.getAsBoolean()) {
      if (Instant.now().isAfter(deadline)) {
        fail("timed out after " + TIMEOUT.toSeconds() + "s waiting for " + what);
      }
      try {
        Thread.sleep(100);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AssertionError(e);
      }
    }
  }

  /**
   * Polls until exactly `count` records arrived (then one more short poll to catch extras), and
   * returns them by partition and offset.
   */
  static List<ConsumerRecord<byte[], byte[]>> pollExactly(KafkaConsumer<byte[], byte[]> c, int count) {
    List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
    Instant deadline = Instant.now().plus(TIMEOUT);
    while (got.size() < count && Instant.now().isBefore(deadline)) {
      for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
        got.add(r);
      }
    }
    assertTrue(got.size() >= count, "read " + got.size() + " of " + count + " records within " + TIMEOUT);
    for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
      got.add(r);
    }
    assertEquals(count, got.size(), "more records than were produced");
    got.sort(Comparator.<ConsumerRecord<byte[], byte[]>>comparingInt(ConsumerRecord::partition).thenComparingLong(ConsumerRecord::offset));
    return got;
  }

  /** Reads exactly `count` records from the start of the given partitions with a fresh assign() consumer. */
  static List<ConsumerRecord<byte[], byte[]>> readFromStart(String topic, Collection<Integer> partitions, int count) {
    try (KafkaConsumer<byte[], byte[]> c = consumer()) {
      List<TopicPartition> tps = partitions.stream().map(p -> new TopicPartition(topic, p)).toList();
      c.assign(tps);
      c.seekToBeginning(tps);
      return pollExactly(c, count);
    }
  }

  static List<ConsumerRecord<byte[], byte[]>> readFromStart(String topic, int count) {
    return readFromStart(topic, List.of(0), count);
  }

  /** Polls (driving the group protocol) until `condition` holds. */
  static void pollUntil(String what, List<KafkaConsumer<byte[], byte[]>> consumers, BooleanSupplier condition,
                        List<ConsumerRecord<byte[], byte[]>> sink) {
    Instant deadline = Instant.now().plus(TIMEOUT.multipliedBy(2));
    while (!condition.getAsBoolean()) {
      if (Instant.now().isAfter(deadline)) {
        fail("timed out after " + TIMEOUT.multipliedBy(2).toSeconds() + "s waiting for " + what);
      }
      for (KafkaConsumer<byte[], byte[]> c : consumers) {
        ConsumerRecords<byte[], byte[]> rs = c.poll(Duration.ofMillis(200));
        if (sink != null) {
          rs.forEach(sink::add);
        }
      }
    }
  }

  static byte[] bytes(String s) {
    return s == null ? null : s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
  }

  static String str(byte[] b) {
    return b == null ? null : new String(b, java.nio.charset.StandardCharsets.UTF_8);
  }
}
