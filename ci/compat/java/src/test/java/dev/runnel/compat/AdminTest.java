package dev.runnel.compat;

import static dev.runnel.compat.Clients.bytes;
import static dev.runnel.compat.Clients.createTopic;
import static dev.runnel.compat.Clients.get;
import static dev.runnel.compat.Clients.unique;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.InvalidTopicException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Kafka's Java AdminClient: topics, partitions, configs, the cluster, offsets, records, groups. */
@ExtendWith(RunnelBroker.class)
class AdminTest {
  static Admin admin;

  @BeforeAll
  static void open() {
    admin = Clients.admin();
  }

  @AfterAll
  static void close() {
    if (admin != null) {
      admin.close(Duration.ofSeconds(30));
    }
  }

  /** The cause of a failed admin future (the Kafka exception the broker's error code maps to). */
  static Throwable failure(KafkaFuture<?> f) {
    ExecutionException e = assertThrows(ExecutionException.class, () -> get(f));
    return e.getCause();
  }

  static Set<String> topicNames() throws Exception {
    return get(admin.listTopics().names());
  }

  @Test
  void createListDescribeAndDeleteTopics() throws Exception {
    String topic = unique("java-admin-topic");
    createTopic(admin, topic, 3, Map.of("retention.ms", "3600000"));
    assertTrue(topicNames().contains(topic));
    TopicDescription d = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
    assertEquals(topic, d.name());
    assertFalse(d.isInternal());
    assertEquals(List.of(0, 1, 2), d.partitions().stream().map(p -> p.partition()).toList());
    assertNotNull(d.topicId());
    d.partitions().forEach(p -> {
      assertEquals(1, p.replicas().size());
      assertEquals(p.leader(), p.replicas().get(0));
      assertEquals(List.of(p.leader()), p.isr());
    });
    // describeTopics by id gives the same topic.
    TopicDescription byId = get(admin.describeTopics(org.apache.kafka.common.TopicCollection.ofTopicIds(List.of(d.topicId())))
        .allTopicIds()).get(d.topicId());
    assertEquals(topic, byId.name());

    assertInstanceOf(TopicExistsException.class,
        failure(admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all()));
    assertInstanceOf(InvalidTopicException.class,
        failure(admin.createTopics(List.of(new NewTopic("bad/name", 1, (short) 1))).all()));
    assertInstanceOf(InvalidPartitionsException.class,
        failure(admin.createTopics(List.of(new NewTopic(unique("java-zero"), 0, (short) 1))).all()));
    assertInstanceOf(InvalidConfigurationException.class,
        failure(admin.createTopics(List.of(new NewTopic(unique("java-badcfg"), 1, (short) 1)
            .configs(Map.of("retention.ms", "not a number")))).all()));

    // Delete one topic by name and another by id.
    String second = unique("java-admin-topic-by-id");
    createTopic(admin, second, 1, Map.of());
    org.apache.kafka.common.Uuid secondId = get(admin.describeTopics(List.of(second)).allTopicNames()).get(second).topicId();
    get(admin.deleteTopics(org.apache.kafka.common.TopicCollection.ofTopicIds(List.of(secondId))).all());
    get(admin.deleteTopics(List.of(topic)).all());
    Clients.waitUntil("topics " + topic + " and " + second + " gone from listTopics", () -> {
      try {
        Set<String> names = topicNames();
        return !names.contains(topic) && !names.contains(second);
      } catch (Exception e) {
        return false;
      }
    });
    Clients.waitUntil("topic " + topic + " gone from listTopics", () -> {
      try {
        return !topicNames().contains(topic);
      } catch (Exception e) {
        return false;
      }
    });
    assertInstanceOf(UnknownTopicOrPartitionException.class,
        failure(admin.describeTopics(List.of(topic)).allTopicNames()));
    assertInstanceOf(UnknownTopicOrPartitionException.class,
        failure(admin.deleteTopics(List.of(topic)).all()));
  }

  @Test
  void createPartitionsGrowsATopicAndRefusesShrinking() throws Exception {
    String topic = unique("java-admin-parts");
    createTopic(admin, topic, 1, Map.of());
    get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all());
    Clients.waitUntil(topic + " with 3 partitions", () -> {
      try {
        return get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size() == 3;
      } catch (Exception e) {
        return false;
      }
    });
    // The new partitions take writes.
    try (KafkaProducer<byte[], byte[]> p = Clients.producer()) {
      assertEquals(0, p.send(new ProducerRecord<>(topic, 2, null, bytes("in the new partition"))).get().offset());
    }
    assertInstanceOf(InvalidPartitionsException.class,
        failure(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(2))).all()));
    assertInstanceOf(InvalidPartitionsException.class,
        failure(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all()));
    assertInstanceOf(UnknownTopicOrPartitionException.class,
        failure(admin.createPartitions(Map.of(unique("java-missing"), NewPartitions.increaseTo(3))).all()));
  }

  static Config describe(String topic) throws Exception {
    ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    return get(admin.describeConfigs(List.of(r)).all()).get(r);
  }

  @Test
  void describeConfigsShowsValuesAndSources() throws Exception {
    String topic = unique("java-admin-describe");
    createTopic(admin, topic, 1, Map.of("retention.ms", "12345", "cleanup.policy", "compact"));
    Config c = describe(topic);
    ConfigEntry retention = c.get("retention.ms");
    assertEquals("12345", retention.value());
    assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, retention.source());
    assertFalse(retention.isDefault());
    assertEquals("compact", c.get("cleanup.policy").value());
    ConfigEntry maxBytes = c.get("max.message.bytes");
    assertNotNull(maxBytes, "max.message.bytes is described");
    assertEquals("1048588", maxBytes.value());
    assertTrue(maxBytes.isDefault(), "an unset config is a default: " + maxBytes);
    assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, maxBytes.source());
    assertInstanceOf(UnknownTopicOrPartitionException.class,
        failure(admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.TOPIC, unique("java-missing")))).all()));
  }

  // Admin.alterConfigs (the legacy, replacing AlterConfigs API) was removed from the Java client in
  // Kafka 4.0; incrementalAlterConfigs is all that 4.x clients and kafka-configs send.

  @Test
  void incrementalAlterConfigsSetsDeletesAppendsAndSubtracts() throws Exception {
    String topic = unique("java-admin-incr");
    createTopic(admin, topic, 1, Map.of("retention.ms", "12345"));
    ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    get(admin.incrementalAlterConfigs(Map.of(r, List.of(
        new AlterConfigOp(new ConfigEntry("segment.bytes", "1048576"), AlterConfigOp.OpType.SET),
        new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND)))).all());
    Config c = describe(topic);
    assertEquals("12345", c.get("retention.ms").value(), "incremental alter keeps what it does not name");
    assertEquals("1048576", c.get("segment.bytes").value());
    assertEquals(Set.of("delete", "compact"), Set.of(c.get("cleanup.policy").value().split(",")));

    get(admin.incrementalAlterConfigs(Map.of(r, List.of(
        new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE),
        new AlterConfigOp(new ConfigEntry("cleanup.policy", "delete"), AlterConfigOp.OpType.SUBTRACT)))).all());
    c = describe(topic);
    assertTrue(c.get("retention.ms").isDefault(), "deleted config is default again: " + c.get("retention.ms"));
    assertEquals("compact", c.get("cleanup.policy").value());

    // validateOnly changes nothing.
    get(admin.incrementalAlterConfigs(Map.of(r, List.of(
        new AlterConfigOp(new ConfigEntry("segment.bytes", "2097152"), AlterConfigOp.OpType.SET))),
        new org.apache.kafka.clients.admin.AlterConfigsOptions().validateOnly(true)).all());
    assertEquals("1048576", describe(topic).get("segment.bytes").value());

    assertInstanceOf(InvalidConfigurationException.class, failure(admin.incrementalAlterConfigs(Map.of(r, List.of(
        new AlterConfigOp(new ConfigEntry("retention.ms", "soon"), AlterConfigOp.OpType.SET)))).all()));
    assertInstanceOf(InvalidConfigurationException.class, failure(admin.incrementalAlterConfigs(Map.of(r, List.of(
        new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET)))).all()));
    assertEquals("1048576", describe(topic).get("segment.bytes").value(), "a refused alter changes nothing");
  }

  @Test
  void describeClusterNamesTheOneBroker() throws Exception {
    DescribeClusterResult cluster = admin.describeCluster();
    Collection<Node> nodes = get(cluster.nodes());
    assertEquals(1, nodes.size());
    Node node = nodes.iterator().next();
    String[] hostPort = RunnelBroker.bootstrap().split(":");
    assertEquals(hostPort[0], node.host());
    assertEquals(Integer.parseInt(hostPort[1]), node.port());
    assertEquals(node.id(), get(cluster.controller()).id());
    String clusterId = get(cluster.clusterId());
    assertNotNull(clusterId);
    assertFalse(clusterId.isBlank());
  }

  @Test
  void listOffsetsEarliestLatestMaxTimestampAndForTimestamp() throws Exception {
    String topic = unique("java-admin-offsets");
    createTopic(admin, topic, 1, Map.of());
    long base = 1_700_000_000_000L;
    long[] times = {base + 1000, base + 2000, base + 9000, base + 3000, base + 4000};
    try (KafkaProducer<byte[], byte[]> p = Clients.producer()) {
      for (long t : times) {
        p.send(new ProducerRecord<>(topic, 0, t, null, bytes("at " + t)));
      }
      p.flush();
    }
    TopicPartition tp = new TopicPartition(topic, 0);
    assertEquals(0, offset(tp, OffsetSpec.earliest()).offset());
    assertEquals(5, offset(tp, OffsetSpec.latest()).offset());
    ListOffsetsResultInfo max = offset(tp, OffsetSpec.maxTimestamp());
    assertEquals(2, max.offset());
    assertEquals(base + 9000, max.timestamp());
    ListOffsetsResultInfo at = offset(tp, OffsetSpec.forTimestamp(base + 2500));
    assertEquals(2, at.offset(), "the first record at or after the time, in offset order");
    assertEquals(base + 9000, at.timestamp());
    assertEquals(-1, offset(tp, OffsetSpec.forTimestamp(base + 100_000)).offset(), "no record that late");
  }

  static ListOffsetsResultInfo offset(TopicPartition tp, OffsetSpec spec) throws Exception {
    return get(admin.listOffsets(Map.of(tp, spec)).partitionResult(tp));
  }

  @Test
  void deleteRecordsMovesTheLogStart() throws Exception {
    String topic = unique("java-admin-delrec");
    createTopic(admin, topic, 1, Map.of());
    try (KafkaProducer<byte[], byte[]> p = Clients.producer()) {
      for (int i = 0; i < 10; i++) {
        p.send(new ProducerRecord<>(topic, 0, null, bytes("r" + i)));
      }
      p.flush();
    }
    TopicPartition tp = new TopicPartition(topic, 0);
    long low = get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(6))).lowWatermarks().get(tp)).lowWatermark();
    assertEquals(6, low);
    assertEquals(6, offset(tp, OffsetSpec.earliest()).offset());
    assertEquals(10, offset(tp, OffsetSpec.latest()).offset());
    List<ConsumerRecord<byte[], byte[]>> rest = Clients.readFromStart(topic, 4);
    assertEquals(6, rest.get(0).offset());
    assertEquals("r6", Clients.str(rest.get(0).value()));
    // Past the end is out of range; -1 (the high watermark) deletes everything.
    assertInstanceOf(OffsetOutOfRangeException.class,
        failure(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(11))).all()));
    long all = get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(-1))).lowWatermarks().get(tp)).lowWatermark();
    assertEquals(10, all);
    assertEquals(10, offset(tp, OffsetSpec.earliest()).offset());
  }

  @Test
  void consumerGroupsListDescribeAlterAndDeleteOffsetsAndDelete() throws Exception {
    String topic = unique("java-admin-groups");
    createTopic(admin, topic, 2, Map.of());
    try (KafkaProducer<byte[], byte[]> p = Clients.producer()) {
      for (int i = 0; i < 10; i++) {
        p.send(new ProducerRecord<>(topic, i % 2, null, bytes("r" + i)));
      }
      p.flush();
    }
    TopicPartition p0 = new TopicPartition(topic, 0);
    TopicPartition p1 = new TopicPartition(topic, 1);

    // An empty group that only holds committed offsets (assign + commit).
    String simple = unique("java-admin-simple");
    try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(Map.of(ConsumerConfig.GROUP_ID_CONFIG, simple))) {
      c.assign(List.of(p0, p1));
      c.commitSync(Map.of(p0, new OffsetAndMetadata(3), p1, new OffsetAndMetadata(4)));
    }
    // An active group with one subscribed member.
    String active = unique("java-admin-active");
    Map<String, Object> conf = new HashMap<>();
    conf.put(ConsumerConfig.GROUP_ID_CONFIG, active);
    conf.put(ConsumerConfig.CLIENT_ID_CONFIG, "admin-test-member");
    try (KafkaConsumer<byte[], byte[]> member = Clients.consumer(conf)) {
      member.subscribe(List.of(topic));
      Clients.pollUntil("the member to be assigned", List.of(member), () -> member.assignment().size() == 2, null);

      Map<String, GroupListing> listed = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all()).stream()
          .collect(Collectors.toMap(GroupListing::groupId, g -> g));
      assertTrue(listed.containsKey(simple), "listed: " + listed.keySet());
      assertTrue(listed.containsKey(active), "listed: " + listed.keySet());
      assertEquals(GroupState.EMPTY, listed.get(simple).groupState().orElseThrow());
      assertEquals(GroupState.STABLE, listed.get(active).groupState().orElseThrow());

      Map<String, ConsumerGroupDescription> described = get(admin.describeConsumerGroups(List.of(simple, active)).all());
      ConsumerGroupDescription da = described.get(active);
      assertEquals(GroupState.STABLE, da.groupState());
      assertEquals(1, da.members().size());
      MemberDescription m = da.members().iterator().next();
      assertEquals("admin-test-member", m.clientId());
      assertEquals(Set.of(p0, p1), m.assignment().topicPartitions());
      // The Java client's default strategies are range, then cooperative-sticky: the group picks range.
      assertEquals("range", da.partitionAssignor());
      assertNotNull(da.coordinator());
      ConsumerGroupDescription ds = described.get(simple);
      assertEquals(GroupState.EMPTY, ds.groupState());
      assertTrue(ds.members().isEmpty());

      // Offsets of a group with a live member that subscribes to the topic cannot be deleted.
      member.commitSync(Map.of(p0, new OffsetAndMetadata(1)));
      assertInstanceOf(GroupSubscribedToTopicException.class,
          failure(admin.deleteConsumerGroupOffsets(active, Set.of(p0)).all()));
      assertInstanceOf(GroupNotEmptyException.class, failure(admin.deleteConsumerGroups(List.of(active)).all()));
    }

    Map<TopicPartition, OffsetAndMetadata> offsets = get(admin.listConsumerGroupOffsets(simple).partitionsToOffsetAndMetadata());
    assertEquals(3, offsets.get(p0).offset());
    assertEquals(4, offsets.get(p1).offset());

    get(admin.alterConsumerGroupOffsets(simple, Map.of(p0, new OffsetAndMetadata(8, "moved"))).all());
    offsets = get(admin.listConsumerGroupOffsets(simple).partitionsToOffsetAndMetadata());
    assertEquals(8, offsets.get(p0).offset());
    assertEquals("moved", offsets.get(p0).metadata());
    assertEquals(4, offsets.get(p1).offset());

    get(admin.deleteConsumerGroupOffsets(simple, Set.of(p1)).all());
    offsets = get(admin.listConsumerGroupOffsets(simple).partitionsToOffsetAndMetadata());
    assertEquals(Set.of(p0), offsets.keySet(), "p1's offset deleted: " + offsets);

    get(admin.deleteConsumerGroups(List.of(simple)).all());
    Set<String> after = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all()).stream()
        .map(GroupListing::groupId).collect(Collectors.toSet());
    assertFalse(after.contains(simple), "deleted group still listed");
    assertInstanceOf(GroupIdNotFoundException.class, failure(admin.deleteConsumerGroups(List.of(simple)).all()));
  }

  @Test
  void describeAConsumerProtocolGroupAndRemoveAStaticClassicMember() throws Exception {
    String topic = unique("java-admin-kip848");
    createTopic(admin, topic, 2, Map.of());
    String group = unique("java-admin-kip848-group");
    Map<String, Object> conf = new HashMap<>();
    conf.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    conf.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
    conf.put(ConsumerConfig.CLIENT_ID_CONFIG, "kip848-member");
    try (KafkaConsumer<byte[], byte[]> member = Clients.consumer(conf)) {
      member.subscribe(List.of(topic));
      Clients.pollUntil("the member to be assigned", List.of(member), () -> member.assignment().size() == 2, null);
      ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
      assertEquals(org.apache.kafka.common.GroupType.CONSUMER, d.type());
      assertEquals(GroupState.STABLE, d.groupState());
      assertEquals(1, d.members().size());
      MemberDescription m = d.members().iterator().next();
      assertEquals("kip848-member", m.clientId());
      assertEquals(Set.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1)), m.assignment().topicPartitions());
      assertTrue(d.groupEpoch().isPresent() && d.groupEpoch().get() > 0, "group epoch: " + d.groupEpoch());
      assertEquals(d.groupEpoch(), d.targetAssignmentEpoch());
      GroupListing listed = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all()).stream()
          .filter(g -> g.groupId().equals(group)).findFirst().orElseThrow();
      assertEquals(org.apache.kafka.common.GroupType.CONSUMER, listed.type().orElseThrow());
    }

    // A static classic member stays after close(); removeMembersFromConsumerGroup takes it out.
    String classic = unique("java-admin-static-group");
    Map<String, Object> sconf = new HashMap<>();
    sconf.put(ConsumerConfig.GROUP_ID_CONFIG, classic);
    sconf.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
    sconf.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "static-1");
    sconf.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 120_000);
    try (KafkaConsumer<byte[], byte[]> member = Clients.consumer(sconf)) {
      member.subscribe(List.of(topic));
      Clients.pollUntil("the static member to be assigned", List.of(member), () -> member.assignment().size() == 2, null);
    }
    ConsumerGroupDescription after = get(admin.describeConsumerGroups(List.of(classic)).all()).get(classic);
    assertEquals(1, after.members().size(), "a closed static member is still in the group");
    assertEquals(java.util.Optional.of("static-1"), after.members().iterator().next().groupInstanceId());
    get(admin.removeMembersFromConsumerGroup(classic, new org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions(
        List.of(new org.apache.kafka.clients.admin.MemberToRemove("static-1")))).all());
    ConsumerGroupDescription removed = get(admin.describeConsumerGroups(List.of(classic)).all()).get(classic);
    assertTrue(removed.members().isEmpty(), "removed: " + removed);
    assertEquals(GroupState.EMPTY, removed.groupState());
  }
}
