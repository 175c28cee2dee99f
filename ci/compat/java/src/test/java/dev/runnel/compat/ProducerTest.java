package dev.runnel.compat;

import static dev.runnel.compat.Clients.bytes;
import static dev.runnel.compat.Clients.createTopic;
import static dev.runnel.compat.Clients.readFromStart;
import static dev.runnel.compat.Clients.unique;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.utils.AppInfoParser;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Kafka's Java producer: what it sends reads back byte for byte. */
@ExtendWith(RunnelBroker.class)
class ProducerTest {

  @Test
  void clientIsThePinnedKafkaVersion() {
    String want = System.getenv("RUNNEL_COMPAT_KAFKA_VERSION");
    if (want != null) {
      assertEquals(want, AppInfoParser.getVersion(), "kafka-clients on the classpath vs ci/kafka/pom.xml");
    }
  }

  @Test
  void keysNullKeysNullValuesAndHeadersReadBackExactly() throws Exception {
    String topic = unique("java-records");
    createTopic(topic, 1);
    byte[] binary = new byte[256];
    for (int i = 0; i < binary.length; i++) {
      binary[i] = (byte) i;
    }
    List<ProducerRecord<byte[], byte[]>> sent = List.of(
        new ProducerRecord<>(topic, 0, bytes("k1"), bytes("v1")),
        new ProducerRecord<>(topic, 0, null, bytes("no key")),
        new ProducerRecord<>(topic, 0, bytes("tombstone"), null),
        new ProducerRecord<>(topic, 0, null, null),
        new ProducerRecord<>(topic, 0, new byte[0], new byte[0]),
        new ProducerRecord<>(topic, 0, 1_600_000_000_123L, binary, binary),
        new ProducerRecord<>(topic, 0, bytes("h"), bytes("with headers"), List.<Header>of(
            new RecordHeader("trace", bytes("abc")),
            new RecordHeader("trace", bytes("duplicate name")),
            new RecordHeader("null-value", (byte[]) null),
            new RecordHeader("binary", binary))));
    List<RecordMetadata> metas = new ArrayList<>();
    try (KafkaProducer<byte[], byte[]> p = Clients.producer()) {
      List<Future<RecordMetadata>> fs = new ArrayList<>();
      for (ProducerRecord<byte[], byte[]> r : sent) {
        fs.add(p.send(r));
      }
      p.flush();
      for (Future<RecordMetadata> f : fs) {
        metas.add(f.get(60, TimeUnit.SECONDS));
      }
    }
    for (int i = 0; i < metas.size(); i++) {
      assertEquals(i, metas.get(i).offset(), "offset of record " + i);
    }
    assertEquals(1_600_000_000_123L, metas.get(5).timestamp());
    List<ConsumerRecord<byte[], byte[]>> got = readFromStart(topic, sent.size());
    for (int i = 0; i < sent.size(); i++) {
      ProducerRecord<byte[], byte[]> s = sent.get(i);
      ConsumerRecord<byte[], byte[]> r = got.get(i);
      assertEquals(i, r.offset());
      assertArrayEquals(s.key(), r.key(), "key of record " + i);
      assertArrayEquals(s.value(), r.value(), "value of record " + i);
      assertEquals(metas.get(i).timestamp(), r.timestamp(), "timestamp of record " + i);
      Header[] want = s.headers().toArray();
      Header[] have = r.headers().toArray();
      assertEquals(want.length, have.length, "headers of record " + i);
      for (int h = 0; h < want.length; h++) {
        assertEquals(want[h].key(), have[h].key());
        assertArrayEquals(want[h].value(), have[h].value());
      }
    }
    assertNull(got.get(1).key());
    assertNull(got.get(2).value());
    assertNull(got.get(6).headers().lastHeader("null-value").value());
  }

  @ParameterizedTest
  @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
  void eachCompressionReadsBackByteExact(String codec) throws Exception {
    String topic = unique("java-" + codec);
    createTopic(topic, 1);
    Random rnd = new Random(42);
    List<byte[]> values = new ArrayList<>();
    for (int i = 0; i < 500; i++) {
      // Half compressible text, half random bytes.
      byte[] v = i % 2 == 0 ? bytes(("record " + i + " ").repeat(20)) : new byte[200 + i];
      if (i % 2 == 1) {
        rnd.nextBytes(v);
      }
      values.add(v);
    }
    try (KafkaProducer<byte[], byte[]> p = Clients.producer(Map.of(
        ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
        ProducerConfig.LINGER_MS_CONFIG, 50,
        ProducerConfig.BATCH_SIZE_CONFIG, 64 * 1024))) {
      for (int i = 0; i < values.size(); i++) {
        p.send(new ProducerRecord<>(topic, 0, bytes("key-" + i), values.get(i)));
      }
      p.flush();
    }
    List<ConsumerRecord<byte[], byte[]>> got = readFromStart(topic, values.size());
    for (int i = 0; i < values.size(); i++) {
      assertEquals(i, got.get(i).offset());
      assertArrayEquals(bytes("key-" + i), got.get(i).key());
      assertArrayEquals(values.get(i), got.get(i).value(), codec + " record " + i);
    }
  }

  @Test
  void idempotentProducerWritesInOrderWithoutDuplicates() throws Exception {
    String topic = unique("java-idempotent");
    createTopic(topic, 3);
    int n = 3000;
    try (KafkaProducer<byte[], byte[]> p = Clients.producer(Map.of(
        ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true,
        ProducerConfig.ACKS_CONFIG, "all",
        ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5,
        ProducerConfig.BATCH_SIZE_CONFIG, 2048,
        ProducerConfig.LINGER_MS_CONFIG, 0))) {
      List<Future<RecordMetadata>> fs = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        fs.add(p.send(new ProducerRecord<>(topic, i % 3, null, bytes(Integer.toString(i)))));
      }
      p.flush();
      for (int i = 0; i < n; i++) {
        RecordMetadata m = fs.get(i).get(60, TimeUnit.SECONDS);
        assertEquals(i % 3, m.partition());
        assertEquals(i / 3, m.offset(), "offset of record " + i);
      }
    }
    List<ConsumerRecord<byte[], byte[]>> got = readFromStart(topic, List.of(0, 1, 2), n);
    // Sorted by partition then offset: partition q holds q, q+3, q+6, ... in order.
    int idx = 0;
    for (int part = 0; part < 3; part++) {
      for (int i = part; i < n; i += 3) {
        ConsumerRecord<byte[], byte[]> r = got.get(idx++);
        assertEquals(part, r.partition());
        assertEquals(i / 3, r.offset());
        assertEquals(Integer.toString(i), Clients.str(r.value()));
      }
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"0", "1", "all"})
  void everyAcksSettingDelivers(String acks) throws Exception {
    String topic = unique("java-acks");
    createTopic(topic, 1);
    int n = 200;
    List<RecordMetadata> metas = new ArrayList<>();
    try (KafkaProducer<byte[], byte[]> p = Clients.producer(Map.of(
        ProducerConfig.ACKS_CONFIG, acks,
        ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false,
        ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 1))) {
      List<Future<RecordMetadata>> fs = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        fs.add(p.send(new ProducerRecord<>(topic, 0, null, bytes("acks " + acks + " #" + i))));
      }
      p.flush();
      for (Future<RecordMetadata> f : fs) {
        metas.add(f.get(60, TimeUnit.SECONDS));
      }
    }
    for (int i = 0; i < n; i++) {
      // With acks=0 the producer never hears an offset (Kafka reports -1).
      long want = acks.equals("0") ? -1 : i;
      assertEquals(want, metas.get(i).offset(), "offset of record " + i + " with acks=" + acks);
    }
    List<ConsumerRecord<byte[], byte[]>> got = readFromStart(topic, n);
    for (int i = 0; i < n; i++) {
      assertEquals("acks " + acks + " #" + i, Clients.str(got.get(i).value()));
    }
  }

  @Test
  void largeRecordNearMaxRequestSize() throws Exception {
    String topic = unique("java-large");
    int maxRequest = 8 * 1024 * 1024;
    createTopic(topic, 1, Map.of("max.message.bytes", Integer.toString(maxRequest)));
    byte[] value = new byte[maxRequest - 1024];
    new Random(7).nextBytes(value);
    RecordMetadata m;
    try (KafkaProducer<byte[], byte[]> p = Clients.producer(Map.of(
        ProducerConfig.MAX_REQUEST_SIZE_CONFIG, maxRequest,
        ProducerConfig.BUFFER_MEMORY_CONFIG, 4L * maxRequest))) {
      m = p.send(new ProducerRecord<>(topic, 0, bytes("big"), value)).get(60, TimeUnit.SECONDS);
    }
    assertEquals(0, m.offset());
    try (var c = Clients.consumer(Map.of(
        "max.partition.fetch.bytes", maxRequest * 2,
        "fetch.max.bytes", maxRequest * 2))) {
      var tp = new org.apache.kafka.common.TopicPartition(topic, 0);
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      List<ConsumerRecord<byte[], byte[]>> got = Clients.pollExactly(c, 1);
      assertTrue(Arrays.equals(value, got.get(0).value()), "the large value reads back byte exact");
      assertArrayEquals(bytes("big"), got.get(0).key());
    }
  }

  @Test
  void recordOverTheTopicsMaxMessageBytesIsRefused() throws Exception {
    String topic = unique("java-too-large");
    createTopic(topic, 1, Map.of("max.message.bytes", "10000"));
    try (KafkaProducer<byte[], byte[]> p = Clients.producer(Map.of(
        ProducerConfig.COMPRESSION_TYPE_CONFIG, "none",
        ProducerConfig.RETRIES_CONFIG, 0,
        ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false))) {
      // Below the producer's own max.request.size (1 MiB), above the topic's limit: the broker refuses it.
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> p.send(new ProducerRecord<>(topic, 0, null, new byte[20_000])).get(60, TimeUnit.SECONDS));
      assertInstanceOf(RecordTooLargeException.class, e.getCause());
      // A record that fits still goes through afterwards.
      RecordMetadata ok = p.send(new ProducerRecord<>(topic, 0, null, new byte[1000])).get(60, TimeUnit.SECONDS);
      assertEquals(0, ok.offset());
    }
    assertEquals(1000, readFromStart(topic, 1).get(0).value().length);
  }
}
