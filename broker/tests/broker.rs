//! The broker over real TCP on loopback, spoken to in raw Kafka frames: every API at every
//! version it advertises, hostile input, produce/fetch semantics and a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use runnel_actors::{Node, ShutdownReason};
use runnel_broker::config::BrokerConfig;
use runnel_broker::versions::supported_versions;
use runnel_broker::{Broker, BrokerServer};
use runnel_protocol::batch::{
    build, Compression, RecordBatch, BASE_SEQUENCE_AT, CRC_AT, CRC_FROM, LAST_OFFSET_DELTA_AT,
    PRODUCER_EPOCH_AT, PRODUCER_ID_AT,
};
use runnel_protocol::kafka::{self, topic_name, RequestKind, ResponseKind};
use runnel_storage::disk::{Disk, RealDisk};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A broker as `runnel server` runs it (listener, connections and housekeeping on a node).
struct TestBroker {
    addr: std::net::SocketAddr,
    broker: Arc<Broker>,
    node: Node,
    server: Option<BrokerServer>,
}

impl TestBroker {
    /// The ordered shutdown `runnel server` runs on Ctrl-C.
    async fn stop(mut self) -> runnel_broker::server::Stopped {
        let server = self.server.take().expect("running");
        let stopped = server
            .shutdown(Duration::from_secs(5))
            .await
            .expect("flushes");
        self.node.stopped().await;
        stopped
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.node.shutdown(ShutdownReason::Requested);
    }
}

async fn start(dir: &std::path::Path, extra: &[(&str, &str)]) -> TestBroker {
    start_on(dir, extra, Arc::new(RealDisk::new())).await
}

async fn start_on(
    dir: &std::path::Path,
    extra: &[(&str, &str)],
    disk: Arc<dyn Disk>,
) -> TestBroker {
    let mut properties = BTreeMap::from([
        ("log.dirs".to_string(), dir.display().to_string()),
        (
            "listeners".to_string(),
            "PLAINTEXT://127.0.0.1:0".to_string(),
        ),
    ]);
    for (k, v) in extra {
        properties.insert(k.to_string(), v.to_string());
    }
    let config = BrokerConfig::from_properties(properties).expect("valid config");
    let (listener, addr) = Broker::bind(&config).await.expect("bind");
    let node = Node::new("test-broker");
    let broker = Broker::open(
        &node,
        config.clone(),
        disk,
        config.advertised_host_port(addr),
    )
    .await
    .expect("broker opens");
    let server = BrokerServer::start(&node, broker.clone(), listener);
    TestBroker {
        addr,
        broker,
        node,
        server: Some(server),
    }
}

struct Client {
    stream: TcpStream,
    next_id: i32,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.expect("connect"),
            next_id: 1,
        }
    }

    async fn send(&mut self, key: ApiKey, version: i16, body: &RequestKind) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("runnel-test")));
        let frame = kafka::encode_request(&header, body).expect("encodes");
        self.stream.write_all(&frame).await.expect("write");
        id
    }

    /// The next response frame, or `None` if the broker closed the connection.
    async fn receive(&mut self, key: ApiKey, version: i16) -> Option<(i32, ResponseKind)> {
        let read = kafka::read_frame(&mut self.stream, usize::MAX);
        let body = tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("a response or a close within 20 s")
            .ok()??;
        Some(kafka::decode_response(key, version, body).expect("decodes"))
    }

    async fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let id = self.send(key, version, &body).await;
        let (got, response) = self
            .receive(key, version)
            .await
            .expect("the broker answers");
        assert_eq!(got, id, "responses come in request order");
        response
    }
}

fn create_topics(name: &str, partitions: i32, configs: &[(&str, &str)]) -> RequestKind {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    RequestKind::CreateTopics(
        CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_configs(configs)]),
    )
}

fn produce(topic: &str, partition: i32, records: Bytes, acks: i16) -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ])]),
    )
}

fn fetch(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]),
    )
}

fn batch(values: &[&str]) -> RecordBatch {
    let records: Vec<build::Record<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| build::Record {
            key: None,
            value: Some(v.as_bytes()),
            timestamp_delta: i as i64,
        })
        .collect();
    build::batch(1_700_000_000_000, &records)
}

/// A copy of `batch` marked as from an idempotent producer (header fields under the CRC).
fn idempotent(batch: &RecordBatch, producer_id: i64, epoch: i16, sequence: i32) -> Bytes {
    let mut bytes = batch.as_bytes().to_vec();
    bytes[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&producer_id.to_be_bytes());
    bytes[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&epoch.to_be_bytes());
    bytes[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&sequence.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_FROM..]);
    bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

/// Api key, version, correlation id 7 and an empty client id: a header v1 with no body.
fn raw_header(api_key: i16, version: i16) -> Vec<u8> {
    [
        &api_key.to_be_bytes()[..],
        &version.to_be_bytes(),
        &7i32.to_be_bytes(),
        &[0, 0],
    ]
    .concat()
}

fn framed(body: &[u8]) -> Vec<u8> {
    [&(body.len() as i32).to_be_bytes()[..], body].concat()
}

fn produce_result(response: ResponseKind) -> (i16, i64) {
    let ResponseKind::Produce(r) = response else {
        panic!("not a produce response")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetched_values(response: &ResponseKind) -> (i16, Vec<(i64, String)>) {
    let ResponseKind::Fetch(r) = response else {
        panic!("not a fetch response")
    };
    let p = &r.responses[0].partitions[0];
    let mut values = Vec::new();
    if let Some(records) = &p.records {
        for batch in RecordBatch::parse_all(records.clone()).expect("valid batches") {
            for record in batch.records().expect("records decode") {
                let value = record
                    .value
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                values.push((
                    batch.base_offset() + i64::from(record.offset_delta),
                    value.unwrap_or_default(),
                ));
            }
        }
    }
    (p.error_code, values)
}

/// A request of each API the broker serves, filled enough to exercise its response.
fn sample(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("test"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        ),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
        ApiKey::Produce => produce("sample", 0, batch(&["x"]).as_bytes().clone(), 1),
        ApiKey::Fetch => fetch("sample", 0, 0, 0),
        ApiKey::ListOffsets => {
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic_name("sample"))
                    .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                        .with_timestamp(-2)]),
            ]))
        }
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic_name("sample"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default(),
                    ]),
            ]),
        ),
        ApiKey::CreateTopics => create_topics("sample-created", 1, &[("retention.ms", "1000")]),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default()
                .with_topic_names(vec![topic_name("no-such-topic")])
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(topic_name("no-such-topic")))]),
        ),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic_name("sample"))
                    .with_count(1),
            ]))
        }
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(topic_name("sample"))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default().with_offset(0),
                    ]),
            ]))
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("sample"))
                    .with_configuration_keys(None),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1"))
                    .with_configuration_keys(None),
            ]))
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("sample"))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("-1")))]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("sample"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("cleanup.policy"))
                            .with_config_operation(2)
                            .with_value(Some(StrBytes::from_static_str("compact"))),
                    ]),
            ]),
        ),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("group"))
                .with_coordinator_keys(vec![StrBytes::from_static_str("group")]),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(group_id("sample-group"))
                .with_member_id(StrBytes::from_static_str("nobody"))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(StrBytes::from_static_str("range"))]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(group_id("sample-group"))
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(group_id("sample-group"))
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(group_id("sample-group"))
                .with_member_id(StrBytes::from_static_str("nobody"))
                .with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(StrBytes::from_static_str("nobody"))]),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(group_id("sample-group"))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic_name("sample"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_committed_offset(1)
                                .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(group_id("sample-group"))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic_name("sample"))
                        .with_partition_indexes(vec![0]),
                ]))
                .with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group_id("sample-group"))
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(topic_name("sample"))
                                .with_partition_indexes(vec![0]),
                        ])),
                ]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(group_id("no-such-group"))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(topic_name("sample"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default(),
                        ]),
                ]),
        ),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![group_id("sample-group")]),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![group_id("no-such-group")]),
        ),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group_id("sample-848"))
                // v1 (KIP-1082) requires the client's own member id.
                .with_member_id(StrBytes::from_static_str("sample848member000000A"))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(10_000)
                .with_subscribed_topic_names(Some(vec![topic_name("sample")]))
                .with_topic_partitions(Some(Vec::new())),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id("sample-group")]),
        ),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default()
                        .with_name(topic_name("sample")),
                ])
                .with_response_partition_limit(10),
        ),
        ApiKey::DescribeLogDirs => {
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None))
        }
        ApiKey::DescribeClientQuotas => {
            RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default())
        }
        ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                describe_user_scram_credentials_request::UserName::default()
                    .with_name(StrBytes::from_static_str("alice")),
            ])),
        ),
        ApiKey::DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(topic_name("sample"))
                    .with_partition_indexes(vec![0]),
            ]))
        }
        ApiKey::DescribeQuorum => {
            RequestKind::DescribeQuorum(DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(topic_name("__cluster_metadata"))
                    .with_partitions(vec![
                        describe_quorum_request::PartitionData::default().with_partition_index(0),
                    ]),
            ]))
        }
        other => panic!("no sample for {other:?}"),
    }
}

fn group_id(name: &'static str) -> GroupId {
    GroupId(StrBytes::from_static_str(name))
}

#[tokio::test]
async fn every_api_answers_at_every_advertised_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    let ResponseKind::CreateTopics(created) = client
        .call(ApiKey::CreateTopics, 7, create_topics("sample", 1, &[]))
        .await
    else {
        panic!("not CreateTopics")
    };
    assert_eq!(created.topics[0].error_code, 0);
    let mut served = 0;
    let mut skipped = Vec::new();
    for key in ApiKey::iter() {
        let Some(range) = supported_versions(key) else {
            continue;
        };
        for version in range.min..=range.max {
            let mut body = sample(key);
            if let RequestKind::FindCoordinator(r) = &mut body {
                // One key before v4, a list of keys from v4.
                if version >= 4 {
                    r.key = StrBytes::default();
                } else {
                    r.coordinator_keys.clear();
                }
            }
            if let RequestKind::CreateTopics(r) = &mut body {
                r.topics[0].name = topic_name(&format!("sample-created-{version}"));
            }
            if let RequestKind::LeaveGroup(r) = &mut body {
                // One member id before v3, a list of members from v3.
                if version >= 3 {
                    r.member_id = StrBytes::default();
                } else {
                    r.members.clear();
                }
            }
            if let RequestKind::OffsetFetch(r) = &mut body {
                // One group before v8, a list of groups from v8.
                if version >= 8 {
                    r.group_id = GroupId::default();
                    r.topics = Some(Vec::new());
                } else {
                    r.groups.clear();
                }
            }
            if key == ApiKey::Fetch && version >= 13 {
                let id = broker.broker.image().topics["sample"].id;
                if let RequestKind::Fetch(r) = &mut body {
                    r.topics[0].topic_id = id;
                }
            }
            // Requests for fields a version lacks fail to encode; those are the client's
            // problem, not the broker's, so such combinations are skipped.
            let header = RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(1);
            if let Err(e) = kafka::encode_request(&header, &body) {
                skipped.push(format!("{key:?} v{version}: {e}"));
                continue;
            }
            let response = client.call(key, version, body).await;
            served += 1;
            match response {
                ResponseKind::ApiVersions(r) => {
                    assert_eq!(r.error_code, 0);
                    assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::Fetch as i16));
                }
                ResponseKind::Metadata(r) => assert!(r
                    .topics
                    .iter()
                    .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "sample"))),
                ResponseKind::Produce(r) => {
                    assert_eq!(r.responses[0].partition_responses[0].error_code, 0)
                }
                ResponseKind::Fetch(r) => {
                    assert_eq!(
                        r.responses[0].partitions[0].error_code, 0,
                        "fetch v{version}"
                    )
                }
                ResponseKind::CreateTopics(r) => assert_eq!(r.topics[0].error_code, 0),
                ResponseKind::DeleteTopics(r) => assert_eq!(
                    r.responses[0].error_code,
                    ResponseError::UnknownTopicOrPartition.code()
                ),
                ResponseKind::CreatePartitions(r) => assert_eq!(
                    r.results[0].error_code,
                    ResponseError::InvalidPartitions.code()
                ),
                ResponseKind::DescribeConfigs(r) => {
                    assert_eq!(r.results.len(), 2);
                    assert!(r
                        .results
                        .iter()
                        .all(|x| x.error_code == 0 && !x.configs.is_empty()));
                }
                ResponseKind::InitProducerId(r) => {
                    assert_eq!(r.error_code, 0);
                    assert!(r.producer_id.0 >= 0);
                }
                ResponseKind::ListOffsets(r) => {
                    assert_eq!(r.topics[0].partitions[0].error_code, 0)
                }
                ResponseKind::DeleteRecords(r) => {
                    assert_eq!(r.topics[0].partitions[0].error_code, 0)
                }
                ResponseKind::AlterConfigs(r) => assert_eq!(r.responses[0].error_code, 0),
                ResponseKind::IncrementalAlterConfigs(r) => {
                    assert_eq!(r.responses[0].error_code, 0)
                }
                ResponseKind::OffsetForLeaderEpoch(r) => {
                    assert_eq!(r.topics[0].partitions[0].error_code, 0)
                }
                ResponseKind::DescribeCluster(r) => assert_eq!(r.brokers.len(), 1),
                ResponseKind::FindCoordinator(r) => {
                    let (code, port) = r
                        .coordinators
                        .first()
                        .map_or((r.error_code, r.port), |c| (c.error_code, c.port));
                    assert_eq!((code, port), (0, i32::from(broker.addr.port())));
                }
                ResponseKind::JoinGroup(r) => {
                    assert_eq!(r.error_code, ResponseError::UnknownMemberId.code())
                }
                ResponseKind::SyncGroup(r) => {
                    assert_eq!(r.error_code, ResponseError::UnknownMemberId.code())
                }
                ResponseKind::Heartbeat(r) => {
                    assert_eq!(r.error_code, ResponseError::UnknownMemberId.code())
                }
                ResponseKind::LeaveGroup(r) => {
                    let code = r.members.first().map_or(r.error_code, |m| m.error_code);
                    assert_eq!(
                        code,
                        ResponseError::UnknownMemberId.code(),
                        "leave v{version}"
                    )
                }
                ResponseKind::OffsetCommit(r) => {
                    assert_eq!(r.topics[0].partitions[0].error_code, 0)
                }
                ResponseKind::OffsetFetch(r) => {
                    let (error, partition) = match r.groups.first() {
                        Some(g) => (g.error_code, g.topics[0].partitions[0].committed_offset),
                        None => (r.error_code, r.topics[0].partitions[0].committed_offset),
                    };
                    assert_eq!((error, partition), (0, 1), "offset fetch v{version}");
                }
                ResponseKind::OffsetDelete(r) => {
                    assert_eq!(r.error_code, ResponseError::GroupIdNotFound.code())
                }
                ResponseKind::DescribeGroups(r) => {
                    assert_eq!(r.groups[0].group_state.as_str(), "Empty")
                }
                ResponseKind::ListGroups(r) => assert!(r
                    .groups
                    .iter()
                    .any(|g| g.group_id.as_str() == "sample-group")),
                ResponseKind::ConsumerGroupHeartbeat(r) => {
                    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
                    assert!(r.member_epoch > 0);
                    let assigned: usize = r
                        .assignment
                        .iter()
                        .flat_map(|a| a.topic_partitions.iter())
                        .map(|tp| tp.partitions.len())
                        .sum();
                    assert!(assigned <= 1, "sample has one partition");
                }
                ResponseKind::ConsumerGroupDescribe(r) => {
                    assert_eq!(
                        r.groups[0].error_code,
                        ResponseError::GroupIdNotFound.code(),
                        "a classic group is not described here"
                    );
                    assert_eq!(
                        r.groups[0]
                            .error_message
                            .as_ref()
                            .map(|m| m.to_string())
                            .as_deref(),
                        Some("Group sample-group is not a consumer group."),
                        "Kafka's sentence"
                    );
                }
                ResponseKind::DeleteGroups(r) => assert_eq!(
                    r.results[0].error_code,
                    ResponseError::GroupIdNotFound.code()
                ),
                ResponseKind::DescribeTopicPartitions(r) => {
                    assert_eq!(r.topics.len(), 1);
                    assert_eq!(
                        (r.topics[0].error_code, r.topics[0].partitions.len()),
                        (0, 1)
                    );
                    assert!(r.next_cursor.is_none());
                }
                ResponseKind::DescribeLogDirs(r) => {
                    assert_eq!(r.results.len(), 1);
                    let dir = &r.results[0];
                    assert_eq!(dir.error_code, 0);
                    let sample = dir
                        .topics
                        .iter()
                        .find(|t| t.name.as_str() == "sample")
                        .expect("sample's partition is in the one log dir");
                    assert!(sample.partitions[0].partition_size > 0, "it holds a batch");
                    if version >= 4 {
                        assert!(dir.total_bytes > 0 && dir.usable_bytes >= 0);
                    }
                }
                ResponseKind::DescribeClientQuotas(r) => {
                    assert_eq!(
                        (r.error_code, r.entries.as_ref().map(Vec::len)),
                        (0, Some(0))
                    )
                }
                ResponseKind::DescribeUserScramCredentials(r) => assert_eq!(
                    (r.error_code, r.results[0].error_code),
                    (0, ResponseError::ResourceNotFound.code())
                ),
                ResponseKind::DescribeProducers(r) => {
                    let p = &r.topics[0].partitions[0];
                    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
                }
                ResponseKind::DescribeQuorum(r) => {
                    let p = &r.topics[0].partitions[0];
                    assert_eq!((r.error_code, p.error_code, p.leader_id.0), (0, 0, 1));
                    assert!(p.leader_epoch >= 1 && p.high_watermark >= 1, "{p:?}");
                    let voters: Vec<i32> =
                        p.current_voters.iter().map(|v| v.replica_id.0).collect();
                    assert_eq!(voters, vec![1], "one node is its own quorum");
                    assert_eq!(r.nodes.len(), usize::from(version >= 2), "nodes from v2");
                }
                other => panic!("unexpected response {other:?}"),
            }
        }
    }
    assert!(
        skipped.len() < 10,
        "{served} API versions exercised, skipped: {skipped:#?}"
    );
    assert!(served >= 130, "only {served} API versions exercised");
}

#[tokio::test]
async fn produce_and_fetch_keep_batches_byte_for_byte_and_offsets_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("t", 2, &[]))
        .await;
    let first = batch(&["a", "b", "c"]);
    let (code, offset) = produce_result(
        client
            .call(
                ApiKey::Produce,
                9,
                produce("t", 1, first.as_bytes().clone(), -1),
            )
            .await,
    );
    assert_eq!((code, offset), (0, 0));
    let (code, offset) = produce_result(
        client
            .call(
                ApiKey::Produce,
                3,
                produce("t", 1, batch(&["d"]).as_bytes().clone(), 1),
            )
            .await,
    );
    assert_eq!((code, offset), (0, 3));
    let response = client.call(ApiKey::Fetch, 12, fetch("t", 1, 0, 0)).await;
    let (code, values) = fetched_values(&response);
    assert_eq!(code, 0);
    let expected: Vec<(i64, String)> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v.to_string()))
        .collect();
    assert_eq!(values, expected);
    // The stored batch is the producer's, with only base offset and epoch stamped.
    let ResponseKind::Fetch(r) = response else {
        unreachable!()
    };
    let stored = r.responses[0].partitions[0]
        .records
        .clone()
        .expect("records");
    assert_eq!(
        &stored[..first.size_bytes()],
        &first.stamped(0, 0).as_bytes()[..]
    );
    // Fetching past the end is OFFSET_OUT_OF_RANGE; at the end, empty.
    let (code, _) = fetched_values(&client.call(ApiKey::Fetch, 12, fetch("t", 1, 9, 0)).await);
    assert_eq!(code, ResponseError::OffsetOutOfRange.code());
    let (code, values) = fetched_values(&client.call(ApiKey::Fetch, 12, fetch("t", 1, 4, 0)).await);
    assert_eq!((code, values.len()), (0, 0));
    // Unknown topics and partitions are per-partition errors.
    let (code, _) = produce_result(
        client
            .call(
                ApiKey::Produce,
                9,
                produce("t", 7, batch(&["x"]).as_bytes().clone(), 1),
            )
            .await,
    );
    assert_eq!(code, ResponseError::UnknownTopicOrPartition.code());
}

#[tokio::test]
async fn corrupt_and_oversized_batches_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topics("t", 1, &[("max.message.bytes", "200")]),
        )
        .await;
    client
        .call(
            ApiKey::Produce,
            9,
            produce("t", 0, batch(&["kept"]).as_bytes().clone(), 1),
        )
        .await;
    let mut bad = batch(&["evil"]).as_bytes().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let (code, _) = produce_result(
        client
            .call(ApiKey::Produce, 9, produce("t", 0, Bytes::from(bad), 1))
            .await,
    );
    assert_eq!(code, ResponseError::CorruptMessage.code());
    let (code, _) = produce_result(
        client
            .call(
                ApiKey::Produce,
                9,
                produce("t", 0, Bytes::from_static(b"short"), 1),
            )
            .await,
    );
    assert_eq!(code, ResponseError::CorruptMessage.code());
    let big = "x".repeat(300);
    let (code, _) = produce_result(
        client
            .call(
                ApiKey::Produce,
                9,
                produce("t", 0, batch(&[&big]).as_bytes().clone(), 1),
            )
            .await,
    );
    assert_eq!(code, ResponseError::MessageTooLarge.code());
    // A valid CRC over a last offset delta that does not match the record count.
    let mut stretched = batch(&["one"]).as_bytes().to_vec();
    stretched[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
        .copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&stretched[CRC_FROM..]);
    stretched[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let (code, _) = produce_result(
        client
            .call(
                ApiKey::Produce,
                9,
                produce("t", 0, Bytes::from(stretched), 1),
            )
            .await,
    );
    assert_eq!(code, ResponseError::InvalidRecord.code());
    let (_, values) = fetched_values(&client.call(ApiKey::Fetch, 12, fetch("t", 0, 0, 0)).await);
    assert_eq!(values, vec![(0, "kept".to_string())]);
}

/// Kafka's rule for compacted topics, as librdkafka's test 0011 checks it: a batch with a
/// record without a key is refused whole with INVALID_RECORD, and the response names each
/// keyless record by its index in the batch, so the client fails exactly those records
/// (and the rest of their batch as collateral).
#[tokio::test]
async fn compacted_topics_refuse_records_without_a_key_and_name_each_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topics("c", 1, &[("cleanup.policy", "compact")]),
        )
        .await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("d", 1, &[]))
        .await;
    let record = |key: Option<&'static str>, value: &'static str| build::Record {
        key: key.map(str::as_bytes),
        value: Some(value.as_bytes()),
        timestamp_delta: 0,
    };
    let mixed = build::batch(
        1_700_000_000_000,
        &[
            record(Some("k0"), "v0"),
            record(None, "v1"),
            record(Some("k2"), "v2"),
            record(None, "v3"),
        ],
    );
    let response = client
        .call(
            ApiKey::Produce,
            9,
            produce("c", 0, mixed.as_bytes().clone(), 1),
        )
        .await;
    let ResponseKind::Produce(r) = &response else {
        panic!("{response:?}")
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidRecord.code());
    assert_eq!(p.base_offset, -1);
    assert_eq!(p.log_start_offset, 0, "Kafka names the log start here");
    let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, vec![1, 3]);
    for e in &p.record_errors {
        assert_eq!(
            e.batch_index_error_message.as_deref(),
            Some("Compacted topic cannot accept message without key in topic partition c-0.")
        );
    }
    let message = p.error_message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with("One or more records have been rejected due to 2 record errors"),
        "{message}"
    );
    // Nothing of the refused batch was written; keyed records go in; a topic that is not
    // compacted takes records without keys as before.
    let keyed = build::batch(1_700_000_000_000, &[record(Some("k"), "kept")]);
    let (code, offset) = produce_result(
        client
            .call(
                ApiKey::Produce,
                9,
                produce("c", 0, keyed.as_bytes().clone(), 1),
            )
            .await,
    );
    assert_eq!((code, offset), (0, 0));
    let (_, values) = fetched_values(&client.call(ApiKey::Fetch, 12, fetch("c", 0, 0, 0)).await);
    assert_eq!(values, vec![(0, "kept".to_string())]);
    let (code, _) = produce_result(
        client
            .call(
                ApiKey::Produce,
                9,
                produce("d", 0, mixed.as_bytes().clone(), 1),
            )
            .await,
    );
    assert_eq!(code, 0);
}

/// With no authorizer, Kafka tells a client that asks that it may do every operation a
/// topic or the cluster supports (librdkafka's DescribeTopics and DescribeCluster check
/// the lists); a client that does not ask gets Kafka's "not asked" value.
#[tokio::test]
async fn metadata_and_describe_cluster_list_every_operation_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("t", 1, &[]))
        .await;
    // READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS
    let topic_ops = [3, 4, 5, 6, 7, 8, 10, 11]
        .iter()
        .map(|op| 1 << op)
        .sum::<i32>();
    // CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE
    let cluster_ops = [5, 7, 8, 9, 10, 11, 12]
        .iter()
        .map(|op| 1 << op)
        .sum::<i32>();
    for asked in [true, false] {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(topic_name("t")))]))
            .with_include_cluster_authorized_operations(asked)
            .with_include_topic_authorized_operations(asked);
        let response = client
            .call(ApiKey::Metadata, 9, RequestKind::Metadata(request))
            .await;
        let ResponseKind::Metadata(r) = &response else {
            panic!("{response:?}")
        };
        let (topic, cluster) = if asked {
            (topic_ops, cluster_ops)
        } else {
            (i32::MIN, i32::MIN)
        };
        assert_eq!(r.topics[0].topic_authorized_operations, topic);
        assert_eq!(r.cluster_authorized_operations, cluster);
        let request =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(asked);
        let response = client
            .call(
                ApiKey::DescribeCluster,
                1,
                RequestKind::DescribeCluster(request),
            )
            .await;
        let ResponseKind::DescribeCluster(r) = &response else {
            panic!("{response:?}")
        };
        assert_eq!(r.cluster_authorized_operations, cluster);
    }
}

#[tokio::test]
async fn hostile_frames_close_only_their_own_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[("socket.request.max.bytes", "1048576")]).await;
    let mut good = Client::connect(broker.addr).await;
    good.call(ApiKey::CreateTopics, 7, create_topics("t", 1, &[]))
        .await;
    good.call(
        ApiKey::Produce,
        9,
        produce("t", 0, batch(&["safe"]).as_bytes().clone(), 1),
    )
    .await;
    let hostile: Vec<Vec<u8>> = vec![
        // A size prefix over socket.request.max.bytes.
        (2_000_000i32).to_be_bytes().to_vec(),
        // A negative size.
        (-5i32).to_be_bytes().to_vec(),
        // Unknown API key 999.
        framed(&raw_header(999, 0)),
        // Produce v99: unsupported.
        framed(&raw_header(0, 99)),
        // Metadata v0 claiming 54 million topics in five bytes (an allocation bomb).
        framed(
            &[
                raw_header(3, 0),
                0x033c0c00i32.to_be_bytes().to_vec(),
                vec![0],
            ]
            .concat(),
        ),
        // Random bytes under a plausible size.
        framed(
            &(0..64u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect::<Vec<u8>>(),
        ),
        // Random bytes.
        (0..64u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
        // A header shorter than its fixed part.
        [&3i32.to_be_bytes()[..], &[0, 18, 0]].concat(),
    ];
    for bytes in hostile {
        let mut stream = TcpStream::connect(broker.addr).await.expect("connect");
        stream.write_all(&bytes).await.expect("write");
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("the broker reacts within 20 s");
        assert!(
            matches!(closed, Ok(0) | Err(_)),
            "connection closed for {bytes:?}"
        );
    }
    // A truncated frame then a close.
    let mut stream = TcpStream::connect(broker.addr).await.expect("connect");
    stream
        .write_all(&100i32.to_be_bytes())
        .await
        .expect("write");
    stream.write_all(&[0, 3, 0, 1]).await.expect("write");
    drop(stream);
    // ApiVersions from the future gets the KIP-511 answer, not a close.
    let mut future = Client::connect(broker.addr).await;
    let id = future
        .send(ApiKey::ApiVersions, 3, &sample(ApiKey::ApiVersions))
        .await;
    let mut raw = future.stream;
    let mut frame = [
        &0i32.to_be_bytes()[..],
        &18i16.to_be_bytes(),
        &99i16.to_be_bytes(),
        &(id + 1).to_be_bytes(),
        &[0, 0],
    ]
    .concat();
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    raw.write_all(&frame).await.expect("write");
    let mut client = Client {
        stream: raw,
        next_id: id + 2,
    };
    let (_, first) = client
        .receive(ApiKey::ApiVersions, 3)
        .await
        .expect("v3 answer");
    let ResponseKind::ApiVersions(first) = first else {
        panic!()
    };
    assert_eq!(first.error_code, 0);
    let (got, fallback) = client
        .receive(ApiKey::ApiVersions, 0)
        .await
        .expect("v0 answer");
    assert_eq!(got, id + 1);
    let ResponseKind::ApiVersions(fallback) = fallback else {
        panic!()
    };
    assert_eq!(
        fallback.error_code,
        ResponseError::UnsupportedVersion.code()
    );
    assert_eq!(fallback.api_keys[0].api_key, ApiKey::ApiVersions as i16);
    // The well-behaved client is still served and the data is unchanged.
    let (code, values) = fetched_values(&good.call(ApiKey::Fetch, 12, fetch("t", 0, 0, 0)).await);
    assert_eq!((code, values), (0, vec![(0, "safe".to_string())]));
}

#[tokio::test]
async fn idempotent_retries_are_deduplicated_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = batch(&["once"]);
    {
        let broker = start(dir.path(), &[]).await;
        let mut client = Client::connect(broker.addr).await;
        client
            .call(ApiKey::CreateTopics, 7, create_topics("t", 1, &[]))
            .await;
        let ResponseKind::InitProducerId(init) = client
            .call(ApiKey::InitProducerId, 4, sample(ApiKey::InitProducerId))
            .await
        else {
            panic!()
        };
        let pid = init.producer_id.0;
        let first = produce_result(
            client
                .call(
                    ApiKey::Produce,
                    9,
                    produce("t", 0, idempotent(&b, pid, 0, 0), -1),
                )
                .await,
        );
        let retry = produce_result(
            client
                .call(
                    ApiKey::Produce,
                    9,
                    produce("t", 0, idempotent(&b, pid, 0, 0), -1),
                )
                .await,
        );
        assert_eq!(first, (0, 0));
        assert_eq!(retry, (0, 0), "a retried batch gets its original offset");
        let gap = produce_result(
            client
                .call(
                    ApiKey::Produce,
                    9,
                    produce("t", 0, idempotent(&b, pid, 0, 5), -1),
                )
                .await,
        );
        assert_eq!(gap.0, ResponseError::OutOfOrderSequenceNumber.code());
        broker.broker.flush_all().await.expect("flush");
        std::fs::write(dir.path().join("pid"), pid.to_string()).expect("write pid");
    }
    let pid: i64 = std::fs::read_to_string(dir.path().join("pid"))
        .expect("pid")
        .parse()
        .expect("number");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    let retry = produce_result(
        client
            .call(
                ApiKey::Produce,
                9,
                produce("t", 0, idempotent(&b, pid, 0, 0), -1),
            )
            .await,
    );
    assert_eq!(retry, (0, 0), "producer state is rebuilt from the log");
    let next = produce_result(
        client
            .call(
                ApiKey::Produce,
                9,
                produce("t", 0, idempotent(&b, pid, 0, 1), -1),
            )
            .await,
    );
    assert_eq!(next, (0, 1));
    let (_, values) = fetched_values(&client.call(ApiKey::Fetch, 12, fetch("t", 0, 0, 0)).await);
    assert_eq!(values.len(), 2, "one copy of each batch: {values:?}");
    // Producer ids handed out before the restart are never handed out again.
    let ResponseKind::InitProducerId(init) = client
        .call(ApiKey::InitProducerId, 4, sample(ApiKey::InitProducerId))
        .await
    else {
        panic!()
    };
    assert!(init.producer_id.0 > pid);
}

#[tokio::test]
async fn a_long_poll_returns_when_data_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut producer = Client::connect(broker.addr).await;
    producer
        .call(ApiKey::CreateTopics, 7, create_topics("t", 1, &[]))
        .await;
    let mut consumer = Client::connect(broker.addr).await;
    let started = tokio::time::Instant::now();
    let id = consumer
        .send(ApiKey::Fetch, 12, &fetch("t", 0, 0, 30_000))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    producer
        .call(
            ApiKey::Produce,
            9,
            produce("t", 0, batch(&["wake"]).as_bytes().clone(), 1),
        )
        .await;
    let (got, response) = consumer.receive(ApiKey::Fetch, 12).await.expect("answer");
    assert_eq!(got, id);
    assert_eq!(fetched_values(&response).1, vec![(0, "wake".to_string())]);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "returned on data, not at max_wait_ms"
    );
}

#[tokio::test]
async fn topics_and_configs_survive_a_restart_and_deleted_topics_stay_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let broker = start(dir.path(), &[]).await;
        let mut client = Client::connect(broker.addr).await;
        client
            .call(
                ApiKey::CreateTopics,
                7,
                create_topics("keep", 3, &[("retention.ms", "12345")]),
            )
            .await;
        client
            .call(ApiKey::CreateTopics, 7, create_topics("gone", 1, &[]))
            .await;
        client
            .call(
                ApiKey::Produce,
                9,
                produce("keep", 2, batch(&["v"]).as_bytes().clone(), 1),
            )
            .await;
        let ResponseKind::DeleteTopics(deleted) = client
            .call(
                ApiKey::DeleteTopics,
                5,
                RequestKind::DeleteTopics(
                    DeleteTopicsRequest::default().with_topic_names(vec![topic_name("gone")]),
                ),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(deleted.responses[0].error_code, 0);
        let ResponseKind::CreateTopics(again) = client
            .call(ApiKey::CreateTopics, 7, create_topics("keep", 1, &[]))
            .await
        else {
            panic!()
        };
        assert_eq!(
            again.topics[0].error_code,
            ResponseError::TopicAlreadyExists.code()
        );
        let ResponseKind::CreateTopics(bad) = client
            .call(ApiKey::CreateTopics, 7, create_topics("bad name!", 1, &[]))
            .await
        else {
            panic!()
        };
        assert_eq!(
            bad.topics[0].error_code,
            ResponseError::InvalidTopicException.code()
        );
        let ResponseKind::CreateTopics(bad) = client
            .call(
                ApiKey::CreateTopics,
                7,
                create_topics("x", 1, &[("segment.bytes", "ten")]),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(
            bad.topics[0].error_code,
            ResponseError::InvalidConfig.code()
        );
        broker.broker.flush_all().await.expect("flush");
    }
    assert!(
        !dir.path().join("gone-0").exists(),
        "a deleted topic's files are removed"
    );
    let broker = start(dir.path(), &[]).await;
    let image = broker.broker.image();
    assert_eq!(image.topics.keys().collect::<Vec<_>>(), vec!["keep"]);
    assert_eq!(image.topics["keep"].partitions, 3);
    let config = broker.broker.topic_config(&image.topics["keep"]);
    assert_eq!(config.get("retention.ms"), "12345");
    let mut client = Client::connect(broker.addr).await;
    let (_, values) = fetched_values(&client.call(ApiKey::Fetch, 12, fetch("keep", 2, 0, 0)).await);
    assert_eq!(values, vec![(0, "v".to_string())]);
}

#[tokio::test]
async fn a_directory_no_topic_owns_is_kept_until_a_topic_of_its_name_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(start(dir.path(), &[]).await);
    let stray = dir.path().join("ghost-0");
    std::fs::create_dir_all(&stray).expect("mkdir");
    std::fs::write(stray.join("00000000000000000000.log"), b"old bytes").expect("write");
    let broker = start(dir.path(), &[]).await;
    assert!(
        stray.join("00000000000000000000.log").exists(),
        "not deleted at start"
    );
    assert!(broker.broker.image().topics.is_empty());
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("ghost", 1, &[]))
        .await;
    let (code, values) = fetched_values(
        &client
            .call(ApiKey::Fetch, 12, fetch("ghost", 0, 0, 0))
            .await,
    );
    assert_eq!((code, values.len()), (0, 0), "the new topic starts empty");
}

#[tokio::test]
async fn log_append_time_topics_stamp_batches_and_list_offsets_finds_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topics("lat", 1, &[("message.timestamp.type", "LogAppendTime")]),
        )
        .await;
    let ResponseKind::Produce(r) = client
        .call(
            ApiKey::Produce,
            9,
            produce("lat", 0, batch(&["a", "b"]).as_bytes().clone(), 1),
        )
        .await
    else {
        panic!("not a produce response")
    };
    let append_time = r.responses[0].partition_responses[0].log_append_time_ms;
    assert!(
        append_time > 1_700_000_000_000,
        "a broker timestamp, not -1: {append_time}"
    );
    let ResponseKind::Fetch(f) = client.call(ApiKey::Fetch, 12, fetch("lat", 0, 0, 0)).await else {
        panic!("not a fetch response")
    };
    let records = f.responses[0].partitions[0]
        .records
        .clone()
        .expect("records");
    let stored = RecordBatch::parse_all(records).expect("the rewritten CRC is valid");
    assert!(stored[0].is_log_append_time());
    assert_eq!(stored[0].max_timestamp(), append_time);

    // ListOffsets on a CreateTime topic: by timestamp (record level) and max timestamp.
    client
        .call(ApiKey::CreateTopics, 7, create_topics("ct", 1, &[]))
        .await;
    client
        .call(
            ApiKey::Produce,
            9,
            produce("ct", 0, batch(&["t0", "t1", "t2"]).as_bytes().clone(), 1),
        )
        .await;
    let list = |timestamp: i64| {
        RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic_name("ct"))
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                    .with_timestamp(timestamp)]),
        ]))
    };
    let mut answers = Vec::new();
    for timestamp in [1_700_000_000_001, -3, -1, -2, 1_800_000_000_000] {
        let ResponseKind::ListOffsets(r) =
            client.call(ApiKey::ListOffsets, 8, list(timestamp)).await
        else {
            panic!("not a list offsets response")
        };
        let p = &r.topics[0].partitions[0];
        answers.push((p.error_code, p.offset, p.timestamp));
    }
    assert_eq!(
        answers,
        vec![
            (0, 1, 1_700_000_000_001),
            (0, 2, 1_700_000_000_002),
            (0, 3, -1),
            (0, 0, -1),
            (0, -1, -1),
        ]
    );
}

fn session_fetch(session_id: i32, epoch: i32, partitions: &[(i32, i64)]) -> RequestKind {
    let topics = if partitions.is_empty() {
        Vec::new()
    } else {
        vec![fetch_request::FetchTopic::default()
            .with_topic(topic_name("s"))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(p, offset)| {
                        fetch_request::FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]
    };
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(10)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(topics),
    )
}

/// (top-level error, session id, partitions in the response with their record bytes).
fn session_answer(response: ResponseKind) -> (i16, i32, Vec<(i32, usize)>) {
    let ResponseKind::Fetch(r) = response else {
        panic!("not a fetch response")
    };
    let partitions = r
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, p.records.as_ref().map_or(0, |b| b.len())))
        .collect();
    (r.error_code, r.session_id, partitions)
}

#[tokio::test]
async fn incremental_fetch_sessions_send_only_what_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("s", 2, &[]))
        .await;
    client
        .call(
            ApiKey::Produce,
            9,
            produce("s", 0, batch(&["x"]).as_bytes().clone(), 1),
        )
        .await;

    // A full fetch opens the session and answers every partition.
    let (error, session, parts) = session_answer(
        client
            .call(ApiKey::Fetch, 12, session_fetch(0, 0, &[(0, 0), (1, 0)]))
            .await,
    );
    assert_eq!(error, 0);
    assert!(session > 0, "a session was opened");
    assert_eq!(parts.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1]);
    assert!(parts[0].1 > 0 && parts[1].1 == 0);

    // The client moved past the record on partition 0; nothing else changed.
    let (error, same, parts) = session_answer(
        client
            .call(ApiKey::Fetch, 12, session_fetch(session, 1, &[(0, 1)]))
            .await,
    );
    assert_eq!((error, same), (0, session));
    assert!(parts.is_empty(), "nothing new: {parts:?}");

    // New data on partition 1 only: the request names no partition, the answer names 1.
    client
        .call(
            ApiKey::Produce,
            9,
            produce("s", 1, batch(&["y"]).as_bytes().clone(), 1),
        )
        .await;
    let (_, _, parts) = session_answer(
        client
            .call(ApiKey::Fetch, 12, session_fetch(session, 2, &[]))
            .await,
    );
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].0, 1);
    assert!(parts[0].1 > 0);

    // A stale epoch and an unknown session are refused at the top level.
    let (error, ..) = session_answer(
        client
            .call(ApiKey::Fetch, 12, session_fetch(session, 2, &[]))
            .await,
    );
    assert_eq!(error, ResponseError::InvalidFetchSessionEpoch.code());
    let (error, ..) = session_answer(
        client
            .call(ApiKey::Fetch, 12, session_fetch(session + 1000, 1, &[]))
            .await,
    );
    assert_eq!(error, ResponseError::FetchSessionIdNotFound.code());
    // Epoch -1 closes the session and fetches without one.
    let (error, closed, parts) = session_answer(
        client
            .call(ApiKey::Fetch, 12, session_fetch(session, -1, &[(0, 0)]))
            .await,
    );
    assert_eq!((error, closed, parts.len()), (0, 0, 1));
    let (error, ..) = session_answer(
        client
            .call(ApiKey::Fetch, 12, session_fetch(session, 3, &[]))
            .await,
    );
    assert_eq!(error, ResponseError::FetchSessionIdNotFound.code());
}

#[tokio::test]
async fn idle_connections_are_closed_after_connections_max_idle_ms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[("connections.max.idle.ms", "300")]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::ApiVersions, 3, sample(ApiKey::ApiVersions))
        .await;
    let mut buf = [0u8; 8];
    let closed = tokio::time::timeout(Duration::from_secs(20), client.stream.read(&mut buf))
        .await
        .expect("closed well before 20 s");
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "the broker closed the idle connection"
    );
}

fn join(member_id: &str) -> RequestKind {
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(group_id("g"))
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"subscription"))]),
    )
}

fn commit(member_id: &str, generation: i32, offsets: &[(i32, i64, &str)]) -> RequestKind {
    commit_to("g", member_id, generation, offsets)
}

fn commit_to(
    group: &'static str,
    member_id: &str,
    generation: i32,
    offsets: &[(i32, i64, &str)],
) -> RequestKind {
    RequestKind::OffsetCommit(
        OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_generation_id_or_member_epoch(generation)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(
                        offsets
                            .iter()
                            .map(|(p, o, m)| {
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*o)
                                    .with_committed_metadata(Some(StrBytes::from_string(
                                        m.to_string(),
                                    )))
                            })
                            .collect(),
                    ),
            ]),
    )
}

fn commit_errors(response: ResponseKind) -> Vec<i16> {
    let ResponseKind::OffsetCommit(r) = response else {
        panic!("not an OffsetCommit response")
    };
    r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// A member whose session has run out is gone for DeleteGroups right away, as in Kafka,
/// even before the group timers' next tick (librdkafka's 0081 deletes its groups exactly
/// one session timeout after closing their static members).
#[tokio::test]
async fn delete_groups_sees_a_session_that_ran_out_before_the_next_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = [
        ("group.initial.rebalance.delay.ms", "0"),
        ("group.min.session.timeout.ms", "10"),
    ];
    let broker = start(dir.path(), &config).await;
    let mut client = Client::connect(broker.addr).await;
    for _ in 0..5 {
        let join_short = |member_id: &str| {
            let RequestKind::JoinGroup(request) = join(member_id) else {
                unreachable!()
            };
            RequestKind::JoinGroup(request.with_session_timeout_ms(10))
        };
        let ResponseKind::JoinGroup(first) =
            client.call(ApiKey::JoinGroup, 9, join_short("")).await
        else {
            panic!()
        };
        let member_id = first.member_id.to_string();
        let ResponseKind::JoinGroup(joined) = client
            .call(ApiKey::JoinGroup, 9, join_short(&member_id))
            .await
        else {
            panic!()
        };
        assert_eq!(joined.error_code, 0);
        // Past the 10 ms session, well within a 100 ms tick.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let response = client
            .call(
                ApiKey::DeleteGroups,
                2,
                RequestKind::DeleteGroups(
                    DeleteGroupsRequest::default().with_groups_names(vec![group_id("g")]),
                ),
            )
            .await;
        let ResponseKind::DeleteGroups(r) = &response else {
            panic!("{response:?}")
        };
        assert_eq!(r.results[0].error_code, 0, "{response:?}");
    }
}

#[tokio::test]
async fn groups_and_committed_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = [("group.initial.rebalance.delay.ms", "0")];
    let member_id;
    {
        let broker = start(dir.path(), &config).await;
        let mut client = Client::connect(broker.addr).await;
        client
            .call(ApiKey::CreateTopics, 7, create_topics("t", 2, &[]))
            .await;
        let ResponseKind::JoinGroup(first) = client.call(ApiKey::JoinGroup, 9, join("")).await
        else {
            panic!()
        };
        assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
        member_id = first.member_id.to_string();
        assert!(member_id.starts_with("runnel-test-"), "{member_id}");
        let ResponseKind::JoinGroup(joined) =
            client.call(ApiKey::JoinGroup, 9, join(&member_id)).await
        else {
            panic!()
        };
        assert_eq!(
            (
                joined.error_code,
                joined.generation_id,
                joined.leader.as_str()
            ),
            (0, 1, member_id.as_str())
        );
        assert_eq!(joined.members.len(), 1);
        let sync = SyncGroupRequest::default()
            .with_group_id(group_id("g"))
            .with_member_id(StrBytes::from_string(member_id.clone()))
            .with_generation_id(1)
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member_id.clone()))
                    .with_assignment(Bytes::from_static(b"both partitions")),
            ]);
        let ResponseKind::SyncGroup(synced) = client
            .call(ApiKey::SyncGroup, 5, RequestKind::SyncGroup(sync))
            .await
        else {
            panic!()
        };
        assert_eq!(synced.error_code, 0);
        assert_eq!(&synced.assignment[..], b"both partitions");

        let ok = commit_errors(
            client
                .call(
                    ApiKey::OffsetCommit,
                    9,
                    commit(&member_id, 1, &[(0, 5, "five"), (1, 9, "")]),
                )
                .await,
        );
        assert_eq!(ok, vec![0, 0]);
        let stale = commit_errors(
            client
                .call(
                    ApiKey::OffsetCommit,
                    9,
                    commit(&member_id, 0, &[(0, 100, "")]),
                )
                .await,
        );
        assert_eq!(stale, vec![ResponseError::IllegalGeneration.code()]);
        let bad = commit_errors(
            client
                .call(
                    ApiKey::OffsetCommit,
                    9,
                    commit(&member_id, 1, &[(7, 1, ""), (0, 6, &"x".repeat(5000))]),
                )
                .await,
        );
        assert_eq!(
            bad,
            vec![
                ResponseError::UnknownTopicOrPartition.code(),
                ResponseError::OffsetMetadataTooLarge.code()
            ]
        );

        // The coordinator's topic is its own.
        let ResponseKind::CreateTopics(created) = client
            .call(
                ApiKey::CreateTopics,
                7,
                create_topics("__consumer_offsets", 3, &[]),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(
            created.topics[0].error_code,
            ResponseError::InvalidRequest.code()
        );
        let ResponseKind::DeleteTopics(deleted) = client
            .call(
                ApiKey::DeleteTopics,
                5,
                RequestKind::DeleteTopics(
                    DeleteTopicsRequest::default()
                        .with_topic_names(vec![topic_name("__consumer_offsets")]),
                ),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(
            deleted.responses[0].error_code,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            broker.broker.image().topics["__consumer_offsets"].partitions,
            50
        );
        broker.broker.flush_all().await.expect("flush");
    }

    let broker = start(dir.path(), &config).await;
    let mut client = Client::connect(broker.addr).await;
    let fetch = OffsetFetchRequest::default()
        .with_group_id(group_id("g"))
        .with_topics(None);
    let ResponseKind::OffsetFetch(fetched) = client
        .call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(fetch))
        .await
    else {
        panic!()
    };
    let offsets: Vec<(i32, i64, String)> = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| {
            let metadata = p.metadata.as_deref().unwrap_or_default().to_string();
            (p.partition_index, p.committed_offset, metadata)
        })
        .collect();
    assert_eq!(
        offsets,
        vec![(0, 5, "five".to_string()), (1, 9, String::new())]
    );

    let describe = DescribeGroupsRequest::default().with_groups(vec![group_id("g")]);
    let ResponseKind::DescribeGroups(described) = client
        .call(
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(describe),
        )
        .await
    else {
        panic!()
    };
    let group = &described.groups[0];
    assert_eq!(
        (group.group_state.as_str(), group.protocol_data.as_str()),
        ("Stable", "range")
    );
    assert_eq!(group.members[0].member_id.as_str(), member_id);
    assert_eq!(&group.members[0].member_assignment[..], b"both partitions");
    assert_eq!(&group.members[0].member_metadata[..], b"subscription");
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group_id("g"))
        .with_member_id(StrBytes::from_string(member_id.clone()))
        .with_generation_id(1);
    let ResponseKind::Heartbeat(beat) = client
        .call(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(heartbeat))
        .await
    else {
        panic!()
    };
    assert_eq!(beat.error_code, 0, "the member is still in its generation");

    // An empty group cannot be deleted while its member is in; after it leaves, it can,
    // and its offsets go with it.
    let leave = LeaveGroupRequest::default()
        .with_group_id(group_id("g"))
        .with_members(vec![leave_group_request::MemberIdentity::default()
            .with_member_id(StrBytes::from_string(member_id.clone()))]);
    let ResponseKind::LeaveGroup(left) = client
        .call(ApiKey::LeaveGroup, 5, RequestKind::LeaveGroup(leave))
        .await
    else {
        panic!()
    };
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![group_id("g")]);
    let ResponseKind::DeleteGroups(deleted) = client
        .call(ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(delete))
        .await
    else {
        panic!()
    };
    assert_eq!(deleted.results[0].error_code, 0);
    broker.broker.flush_all().await.expect("flush");
    drop(broker);
    let broker = start(dir.path(), &config).await;
    let mut client = Client::connect(broker.addr).await;
    let fetch = OffsetFetchRequest::default()
        .with_group_id(group_id("g"))
        .with_topics(None);
    let ResponseKind::OffsetFetch(fetched) = client
        .call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(fetch))
        .await
    else {
        panic!()
    };
    assert!(fetched.topics.is_empty(), "a deleted group stays deleted");
    let ResponseKind::ListGroups(listed) = client
        .call(
            ApiKey::ListGroups,
            5,
            RequestKind::ListGroups(ListGroupsRequest::default()),
        )
        .await
    else {
        panic!()
    };
    assert!(listed.groups.is_empty());
}

fn fetch_committed(group: &'static str) -> RequestKind {
    RequestKind::OffsetFetch(
        OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(None),
    )
}

fn committed_offsets(response: ResponseKind) -> Vec<(i32, i64)> {
    let ResponseKind::OffsetFetch(r) = response else {
        panic!("not an OffsetFetch response")
    };
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.committed_offset))
        .collect()
}

#[tokio::test]
async fn offsets_expire_after_retention_and_unreadable_records_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = [("offsets.retention.minutes", "60")];
    {
        let broker = start(dir.path(), &config).await;
        let mut client = Client::connect(broker.addr).await;
        client
            .call(ApiKey::CreateTopics, 7, create_topics("t", 2, &[]))
            .await;
        // An admin-style commit (no member, no generation) makes an offsets-only group.
        let ok = commit_errors(
            client
                .call(ApiKey::OffsetCommit, 9, commit("", -1, &[(0, 3, "")]))
                .await,
        );
        assert_eq!(ok, vec![0]);
        // Clients cannot write the coordinator's topic...
        let partition = broker.broker.groups.partition_for("g");
        let (code, _) = produce_result(
            client
                .call(
                    ApiKey::Produce,
                    9,
                    produce(
                        "__consumer_offsets",
                        partition,
                        batch(&["junk"]).as_bytes().clone(),
                        1,
                    ),
                )
                .await,
        );
        assert_eq!(code, ResponseError::InvalidTopicException.code());
        // ...but a damaged record there (written behind the API) must not stop a start.
        let offsets = broker
            .broker
            .partition("__consumer_offsets", partition)
            .expect("created with the first commit");
        let junk = build::batch(
            0,
            &[
                build::Record {
                    key: Some(b"\x00\x01garbage"),
                    value: Some(b"x"),
                    timestamp_delta: 0,
                },
                build::Record {
                    key: None,
                    value: Some(b"no key"),
                    timestamp_delta: 0,
                },
            ],
        );
        offsets.append(vec![junk], 0, 0).await.expect("append");
        broker.broker.flush_all().await.expect("flush");
    }
    let broker = start(dir.path(), &config).await;
    let mut client = Client::connect(broker.addr).await;
    assert_eq!(
        committed_offsets(
            client
                .call(ApiKey::OffsetFetch, 7, fetch_committed("g"))
                .await
        ),
        vec![(0, 3)]
    );
    let now = runnel_broker::now_ms();
    broker
        .broker
        .groups
        .tick(&broker.broker, now + 59 * 60_000, true)
        .await;
    assert_eq!(
        committed_offsets(
            client
                .call(ApiKey::OffsetFetch, 7, fetch_committed("g"))
                .await
        ),
        vec![(0, 3)],
        "not yet expired"
    );
    broker
        .broker
        .groups
        .tick(&broker.broker, now + 61 * 60_000, true)
        .await;
    assert!(committed_offsets(
        client
            .call(ApiKey::OffsetFetch, 7, fetch_committed("g"))
            .await
    )
    .is_empty());
    broker.broker.flush_all().await.expect("flush");
    drop(broker);
    let broker = start(dir.path(), &config).await;
    let mut client = Client::connect(broker.addr).await;
    assert!(
        committed_offsets(
            client
                .call(ApiKey::OffsetFetch, 7, fetch_committed("g"))
                .await
        )
        .is_empty(),
        "expired offsets stay expired after a restart"
    );
}

fn consumer_heartbeat(member_id: &str, epoch: i32) -> RequestKind {
    let mut request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group_id("g848"))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 });
    if epoch == 0 {
        request = request
            .with_subscribed_topic_names(Some(vec![topic_name("t")]))
            .with_topic_partitions(Some(Vec::new()));
    }
    RequestKind::ConsumerGroupHeartbeat(request)
}

#[tokio::test]
async fn consumer_protocol_groups_survive_a_restart_and_fence_stale_epochs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (member_id, epoch, topic_id);
    {
        let broker = start(dir.path(), &[]).await;
        let mut client = Client::connect(broker.addr).await;
        client
            .call(ApiKey::CreateTopics, 7, create_topics("t", 3, &[]))
            .await;
        topic_id = broker.broker.image().topics["t"].id;
        let ResponseKind::ConsumerGroupHeartbeat(joined) = client
            .call(ApiKey::ConsumerGroupHeartbeat, 0, consumer_heartbeat("", 0))
            .await
        else {
            panic!()
        };
        assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
        member_id = joined.member_id.expect("an id for a v0 join").to_string();
        epoch = joined.member_epoch;
        let assignment = joined.assignment.expect("a join gets its assignment");
        assert_eq!(assignment.topic_partitions[0].topic_id, topic_id);
        assert_eq!(assignment.topic_partitions[0].partitions, vec![0, 1, 2]);
        let ok = commit_errors(
            client
                .call(
                    ApiKey::OffsetCommit,
                    9,
                    commit_to("g848", &member_id, epoch, &[(1, 4, "")]),
                )
                .await,
        );
        assert_eq!(ok, vec![0]);
        let stale = commit_errors(
            client
                .call(
                    ApiKey::OffsetCommit,
                    9,
                    commit_to("g848", &member_id, epoch - 1, &[(1, 9, "")]),
                )
                .await,
        );
        assert_eq!(stale, vec![ResponseError::StaleMemberEpoch.code()]);
        broker.broker.flush_all().await.expect("flush");
    }
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    let owned = consumer_heartbeat(&member_id, epoch);
    let RequestKind::ConsumerGroupHeartbeat(owned) = owned else {
        unreachable!()
    };
    let owned = owned.with_topic_partitions(Some(vec![
        consumer_group_heartbeat_request::TopicPartitions::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![0, 1, 2]),
    ]));
    let ResponseKind::ConsumerGroupHeartbeat(beat) = client
        .call(
            ApiKey::ConsumerGroupHeartbeat,
            0,
            RequestKind::ConsumerGroupHeartbeat(owned),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(
        (beat.error_code, beat.member_epoch),
        (0, epoch),
        "the member and its epoch came back: {:?}",
        beat.error_message
    );
    let describe = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id("g848")]);
    let ResponseKind::ConsumerGroupDescribe(described) = client
        .call(
            ApiKey::ConsumerGroupDescribe,
            1,
            RequestKind::ConsumerGroupDescribe(describe),
        )
        .await
    else {
        panic!()
    };
    let group = &described.groups[0];
    assert_eq!(
        (group.error_code, group.group_state.as_str()),
        (0, "Stable")
    );
    assert_eq!(group.members[0].member_id.as_str(), member_id);
    let fetched = committed_offsets(
        client
            .call(ApiKey::OffsetFetch, 7, fetch_committed("g848"))
            .await,
    );
    assert_eq!(fetched, vec![(1, 4)]);
    // Classic members cannot join it.
    let RequestKind::JoinGroup(classic) = join("") else {
        unreachable!()
    };
    let ResponseKind::JoinGroup(refused) = client
        .call(
            ApiKey::JoinGroup,
            9,
            RequestKind::JoinGroup(classic.with_group_id(group_id("g848"))),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(
        refused.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
}

#[tokio::test]
async fn the_ordered_shutdown_answers_what_it_handles_closes_connections_and_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("t", 1, &[]))
        .await;
    let produced = client
        .call(
            ApiKey::Produce,
            9,
            produce("t", 0, batch(&["a", "b"]).as_bytes().clone(), 1),
        )
        .await;
    let ResponseKind::Produce(produced) = produced else {
        panic!("{produced:?}")
    };
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    // A long poll is in flight when the shutdown starts: it is answered, then closed.
    let parked = client
        .send(ApiKey::Fetch, 12, &fetch("t", 0, 2, 1_000))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = broker.addr;
    let stopped = broker.stop().await;
    assert_eq!(stopped.connections_cut, 0, "{stopped:?}");
    assert_eq!(stopped.partitions_flushed, 1, "t-0: {stopped:?}");
    let (got, answer) = client
        .receive(ApiKey::Fetch, 12)
        .await
        .expect("the parked fetch is answered");
    assert_eq!(got, parked);
    assert!(matches!(answer, ResponseKind::Fetch(_)));
    assert!(
        client.receive(ApiKey::Fetch, 12).await.is_none(),
        "then the connection closes"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );

    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    let fetched = client.call(ApiKey::Fetch, 12, fetch("t", 0, 0, 0)).await;
    let ResponseKind::Fetch(fetched) = fetched else {
        panic!("{fetched:?}")
    };
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 2);
}

#[tokio::test]
async fn an_append_wakes_only_the_fetches_parked_on_its_partition() {
    const PARTITIONS: i32 = 1_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut admin = Client::connect(broker.addr).await;
    admin
        .call(
            ApiKey::CreateTopics,
            7,
            create_topics("wide", PARTITIONS, &[]),
        )
        .await;
    let mut parked = Vec::new();
    for index in 0..PARTITIONS {
        let mut client = Client::connect(broker.addr).await;
        let id = client
            .send(ApiKey::Fetch, 12, &fetch("wide", index, 0, 30_000))
            .await;
        parked.push((client, id));
    }
    let partitions: Vec<_> = (0..PARTITIONS)
        .map(|i| broker.broker.partition("wide", i).expect("created"))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while partitions.iter().any(|p| p.fetch_polls() == 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "every fetch reads once"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before: Vec<u64> = partitions.iter().map(|p| p.fetch_polls()).collect();

    let produced = admin
        .call(
            ApiKey::Produce,
            9,
            produce("wide", 7, batch(&["only here"]).as_bytes().clone(), 1),
        )
        .await;
    let ResponseKind::Produce(produced) = produced else {
        panic!("{produced:?}")
    };
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    let (client, id) = &mut parked[7];
    let (got, answer) = client
        .receive(ApiKey::Fetch, 12)
        .await
        .expect("the fetch on partition 7 is answered");
    assert_eq!(got, *id);
    let ResponseKind::Fetch(answer) = answer else {
        panic!("{answer:?}")
    };
    let records = answer.responses[0].partitions[0].records.clone();
    assert!(
        records.is_some_and(|r| !r.is_empty()),
        "it carries the record"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let after: Vec<u64> = partitions.iter().map(|p| p.fetch_polls()).collect();
    let woke: Vec<usize> = (0..before.len())
        .filter(|&i| after[i] != before[i])
        .collect();
    assert!(
        woke == [7],
        "only partition 7's fetch should wake and read; {} did, from {:?}",
        woke.len(),
        &woke[..woke.len().min(10)]
    );
    assert_eq!(after[7], before[7] + 1);
}

/// Produces one record to `partition` and answers its error code and base offset.
async fn produce_one(client: &mut Client, topic: &str, partition: i32, value: &str) -> (i16, i64) {
    let response = client
        .call(
            ApiKey::Produce,
            9,
            produce(topic, partition, batch(&[value]).as_bytes().clone(), 1),
        )
        .await;
    let ResponseKind::Produce(response) = response else {
        panic!("{response:?}")
    };
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

/// Every value in `partition` from offset 0, in order.
async fn read_values(client: &mut Client, topic: &str, partition: i32) -> Vec<String> {
    let mut values = Vec::new();
    let mut offset = 0;
    loop {
        let fetched = client
            .call(ApiKey::Fetch, 12, fetch(topic, partition, offset, 0))
            .await;
        let ResponseKind::Fetch(fetched) = fetched else {
            panic!("{fetched:?}")
        };
        let answer = &fetched.responses[0].partitions[0];
        assert_eq!(answer.error_code, 0, "fetch of {topic}-{partition}");
        let records = answer.records.clone().unwrap_or_default();
        if records.is_empty() {
            return values;
        }
        let batches = RecordBatch::parse_all(records).expect("valid batches");
        for batch in batches {
            for record in batch.records().expect("records decode") {
                let value = record.value.expect("values are set");
                values.push(String::from_utf8(value.to_vec()).expect("utf-8"));
            }
            offset = batch.last_offset() + 1;
        }
    }
}

#[tokio::test]
async fn a_panicking_partition_restarts_with_every_acknowledged_record_while_others_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("s", 4, &[]))
        .await;
    let crashing = broker.broker.partition("s", 1).expect("created");
    let mut acked: Vec<Vec<String>> = vec![Vec::new(); 4];
    let mut refused_elsewhere = 0;
    for i in 0..400 {
        let partition = i % 4;
        if i == 201 {
            assert!(
                crashing.inject_crash().await.is_err(),
                "the crash drops the change it was in"
            );
        }
        let value = format!("v{i}");
        let (error, _) = produce_one(&mut client, "s", partition, &value).await;
        match (error, partition) {
            (0, _) => acked[partition as usize].push(value),
            (_, 1) => {} // the crashed partition may refuse while it recovers
            _ => refused_elsewhere += 1,
        }
    }
    assert_eq!(refused_elsewhere, 0, "other partitions never saw an error");
    assert!(
        !crashing.is_offline(),
        "one crash is a restart, not offline"
    );
    // It came back: it takes records again, and holds every acknowledged one.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if produce_one(&mut client, "s", 1, "after").await.0 == 0 {
            acked[1].push("after".into());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the partition comes back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for partition in 0..4 {
        let values = read_values(&mut client, "s", partition).await;
        assert_eq!(values, acked[partition as usize], "partition {partition}");
    }
    assert!(
        acked[1].len() > 90,
        "most of the stream went to partition 1"
    );
}

#[tokio::test]
async fn a_partition_that_keeps_failing_goes_offline_alone_and_metadata_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("f", 2, &[]))
        .await;
    let failing = broker.broker.partition("f", 0).expect("created");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !failing.is_offline() {
        assert!(std::time::Instant::now() < deadline, "it goes offline");
        let _ = failing.inject_crash().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reason = failing.offline_reason().expect("a reason");
    assert!(
        reason.contains("kept failing") && reason.contains("fault injection"),
        "{reason}"
    );
    assert_eq!(
        produce_one(&mut client, "f", 1, "fine").await.0,
        0,
        "the other partition serves"
    );
    let (error, _) = produce_one(&mut client, "f", 0, "refused").await;
    assert_eq!(error, ResponseError::KafkaStorageError.code());
    let metadata = client
        .call(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name("f"))),
            ]))),
        )
        .await;
    let ResponseKind::Metadata(metadata) = metadata else {
        panic!("{metadata:?}")
    };
    let partitions = &metadata.topics[0].partitions;
    let codes: Vec<(i32, i16, usize)> = partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code, p.offline_replicas.len()))
        .collect();
    assert!(
        codes.contains(&(0, ResponseError::KafkaStorageError.code(), 1)),
        "{codes:?}"
    );
    assert!(codes.contains(&(1, 0, 0)), "{codes:?}");
    assert!(!broker.node.is_shutting_down(), "the broker goes on");
}

#[tokio::test]
async fn a_crashed_coordinator_shard_reloads_its_groups_and_commits_while_others_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[("group.initial.rebalance.delay.ms", "0")]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("t", 2, &[]))
        .await;
    // Two offsets-only groups on different shards.
    let groups = ["g", "other"];
    let shard_of = |g: &str| broker.broker.groups.partition_for(g);
    assert_ne!(
        shard_of("g"),
        shard_of("other"),
        "the test needs two shards"
    );
    for (i, group) in groups.iter().enumerate() {
        let errors = commit_errors(
            client
                .call(
                    ApiKey::OffsetCommit,
                    9,
                    commit_to(group, "", -1, &[(0, 10 + i as i64, "")]),
                )
                .await,
        );
        assert_eq!(errors, vec![0]);
    }
    broker.broker.groups.inject_crash("g").await;
    // The other shard never noticed.
    let other = committed_offsets(
        client
            .call(ApiKey::OffsetFetch, 5, fetch_committed("other"))
            .await,
    );
    assert_eq!(other, vec![(0, 11)]);
    // The crashed one comes back with its acknowledged commit, and takes new ones.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = client
            .call(ApiKey::OffsetFetch, 5, fetch_committed("g"))
            .await;
        let ResponseKind::OffsetFetch(r) = &response else {
            panic!("{response:?}")
        };
        if r.error_code == 0 {
            assert_eq!(committed_offsets(response), vec![(0, 10)]);
            break;
        }
        assert_eq!(r.error_code, ResponseError::NotCoordinator.code());
        assert!(std::time::Instant::now() < deadline, "the shard comes back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let errors = commit_errors(
        client
            .call(
                ApiKey::OffsetCommit,
                9,
                commit_to("g", "", -1, &[(1, 20, "")]),
            )
            .await,
    );
    assert_eq!(errors, vec![0]);
    let mut g = committed_offsets(
        client
            .call(ApiKey::OffsetFetch, 5, fetch_committed("g"))
            .await,
    );
    g.sort();
    assert_eq!(g, vec![(0, 10), (1, 20)]);
    // A member can still join the reloaded group's shard.
    let ResponseKind::JoinGroup(first) = client.call(ApiKey::JoinGroup, 9, join("")).await else {
        panic!()
    };
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
}

#[tokio::test]
async fn a_crashed_controller_restarts_from_the_metadata_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let broker = start(dir.path(), &[]).await;
        let mut client = Client::connect(broker.addr).await;
        client
            .call(ApiKey::CreateTopics, 7, create_topics("before", 1, &[]))
            .await;
        broker.broker.inject_controller_crash().await;
        // Changes go on after the restart, in one log, and producer ids are never reused.
        let ResponseKind::CreateTopics(created) = client
            .call(ApiKey::CreateTopics, 7, create_topics("after", 2, &[]))
            .await
        else {
            panic!()
        };
        assert_eq!(created.topics[0].error_code, 0, "{created:?}");
        let first = broker.broker.allocate_producer_id().await.expect("an id");
        broker.broker.inject_controller_crash().await;
        let second = broker.broker.allocate_producer_id().await.expect("an id");
        assert!(second > first, "{second} after {first}");
        assert!(!broker.node.is_shutting_down());
        broker.stop().await;
    }
    let broker = start(dir.path(), &[]).await;
    let image = broker.broker.image();
    assert_eq!(image.topics["before"].partitions, 1);
    assert_eq!(image.topics["after"].partitions, 2);
    assert!(broker.broker.partition("after", 1).is_some());
}

fn stored_batches(response: &ResponseKind) -> Vec<RecordBatch> {
    let ResponseKind::Fetch(r) = response else {
        panic!("not a fetch response")
    };
    let records = r.responses[0].partitions[0].records.clone();
    RecordBatch::parse_all(records.expect("records")).expect("valid batches")
}

fn encoded(compression: Compression, values: &[&str]) -> Bytes {
    let records: Vec<build::NewRecord> = values
        .iter()
        .map(|v| build::NewRecord {
            value: Some(Bytes::from(v.repeat(50))),
            timestamp_ms: 1_700_000_000_000,
            ..Default::default()
        })
        .collect();
    let options = build::BatchOptions {
        compression,
        ..Default::default()
    };
    build::encode(options, &records).expect("encodes")
}

#[tokio::test]
async fn topics_with_a_compression_type_store_batches_in_that_codec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    for (topic, configs) in [
        (
            "zs",
            &[
                ("compression.type", "zstd"),
                ("compression.zstd.level", "19"),
            ][..],
        ),
        ("lz", &[("compression.type", "lz4")][..]),
        ("plain", &[("compression.type", "uncompressed")][..]),
    ] {
        let ResponseKind::CreateTopics(r) = client
            .call(ApiKey::CreateTopics, 7, create_topics(topic, 1, configs))
            .await
        else {
            panic!("not a create topics response")
        };
        assert_eq!(
            r.topics[0].error_code, 0,
            "{topic}: {:?}",
            r.topics[0].error_message
        );
    }
    let cases = [
        ("zs", Compression::None, Compression::Zstd),
        ("zs", Compression::Gzip, Compression::Zstd),
        ("lz", Compression::Snappy, Compression::Lz4),
        ("plain", Compression::Zstd, Compression::None),
    ];
    for (i, (topic, sent, want)) in cases.into_iter().enumerate() {
        let values = [format!("a{i}"), format!("b{i}")];
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let produced = client
            .call(
                ApiKey::Produce,
                9,
                produce(topic, 0, encoded(sent, &values), 1),
            )
            .await;
        let (code, _) = produce_result(produced);
        assert_eq!(code, 0, "{topic} {sent:?}");
        let response = client.call(ApiKey::Fetch, 12, fetch(topic, 0, 0, 0)).await;
        let last = stored_batches(&response).pop().expect("a batch");
        assert_eq!(last.compression(), want, "{topic}: sent {sent:?}");
        let got: Vec<String> = last
            .records()
            .expect("decodes")
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect();
        let expected: Vec<String> = values.iter().map(|v| v.repeat(50)).collect();
        assert_eq!(got, expected, "{topic}: sent {sent:?}");
    }

    // A batch already in the topic's codec is kept exactly as the producer compressed it.
    let sent = encoded(Compression::Lz4, &["same"]);
    client
        .call(ApiKey::Produce, 9, produce("lz", 0, sent.clone(), 1))
        .await;
    let response = client.call(ApiKey::Fetch, 12, fetch("lz", 0, 0, 0)).await;
    let last = stored_batches(&response).pop().expect("a batch");
    assert_eq!(last.as_bytes()[CRC_AT..], sent[CRC_AT..], "byte for byte");

    // An idempotent batch keeps its producer fields, so a retry is still a duplicate.
    let batch = RecordBatch::parse(encoded(Compression::None, &["once"]))
        .expect("valid")
        .0;
    let first = idempotent(&batch, 7_000, 0, 0);
    let (code, offset) = produce_result(
        client
            .call(ApiKey::Produce, 9, produce("zs", 0, first.clone(), 1))
            .await,
    );
    assert_eq!(code, 0);
    let (code, again) = produce_result(
        client
            .call(ApiKey::Produce, 9, produce("zs", 0, first, 1))
            .await,
    );
    assert_eq!(
        (code, again),
        (0, offset),
        "the retry answers its first offset"
    );
    let response = client
        .call(ApiKey::Fetch, 12, fetch("zs", 0, offset, 0))
        .await;
    let stored = stored_batches(&response);
    assert_eq!(stored.len(), 1, "stored once");
    assert_eq!(
        (
            stored[0].compression(),
            stored[0].producer_id(),
            stored[0].base_sequence()
        ),
        (Compression::Zstd, 7_000, 0)
    );

    // Codecs and levels Kafka does not know are refused with a sentence.
    for configs in [
        &[("compression.type", "brotli")][..],
        &[("compression.zstd.level", "23")][..],
        &[("compression.gzip.level", "0")][..],
        &[("compression.lz4.level", "18")][..],
    ] {
        let ResponseKind::CreateTopics(r) = client
            .call(
                ApiKey::CreateTopics,
                7,
                create_topics("bad-codec", 1, configs),
            )
            .await
        else {
            panic!("not a create topics response")
        };
        assert_eq!(
            r.topics[0].error_code,
            ResponseError::InvalidConfig.code(),
            "{configs:?}"
        );
        let message = r.topics[0]
            .error_message
            .as_deref()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains("expected"), "{configs:?}: {message}");
    }
}

#[tokio::test]
async fn describe_topic_partitions_pages_through_every_partition_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    for (name, count) in [("a-seven", 7), ("b-one", 1), ("c-five", 5)] {
        client
            .call(ApiKey::CreateTopics, 7, create_topics(name, count, &[]))
            .await;
    }
    let wanted = ["c-five", "a-seven", "b-one", "no-such-topic"];
    let mut seen = Vec::new();
    let mut unknown = Vec::new();
    let mut cursor = None;
    for page in 0.. {
        assert!(page < 20, "the cursor moves on");
        let request = DescribeTopicPartitionsRequest::default()
            .with_topics(
                wanted
                    .iter()
                    .map(|t| {
                        describe_topic_partitions_request::TopicRequest::default()
                            .with_name(topic_name(t))
                    })
                    .collect(),
            )
            .with_response_partition_limit(3)
            .with_cursor(cursor.take());
        let ResponseKind::DescribeTopicPartitions(r) = client
            .call(
                ApiKey::DescribeTopicPartitions,
                0,
                RequestKind::DescribeTopicPartitions(request),
            )
            .await
        else {
            panic!("not a describe topic partitions response")
        };
        let listed: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
        assert!(listed <= 3, "page {page} holds {listed} partitions");
        for topic in &r.topics {
            let name = topic.name.as_deref().expect("named").to_string();
            if topic.error_code != 0 {
                unknown.push((name.clone(), topic.error_code));
            }
            for p in &topic.partitions {
                seen.push((name.clone(), p.partition_index));
            }
        }
        match r.next_cursor {
            Some(next) => {
                cursor = Some(
                    describe_topic_partitions_request::Cursor::default()
                        .with_topic_name(next.topic_name)
                        .with_partition_index(next.partition_index),
                )
            }
            None => break,
        }
    }
    let mut expected: Vec<(String, i32)> = Vec::new();
    for (name, count) in [("a-seven", 7), ("b-one", 1), ("c-five", 5)] {
        expected.extend((0..count).map(|i| (name.to_string(), i)));
    }
    assert_eq!(seen, expected, "sorted by name, each partition once");
    assert_eq!(
        unknown,
        vec![(
            "no-such-topic".to_string(),
            ResponseError::UnknownTopicOrPartition.code()
        )]
    );
}

#[tokio::test]
async fn describe_producers_and_client_quotas_answer_what_the_tools_ask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("prod", 2, &[]))
        .await;
    let sent = batch(&["a", "b", "c"]);
    for sequence in [0, 3] {
        let (code, _) = produce_result(
            client
                .call(
                    ApiKey::Produce,
                    9,
                    produce("prod", 1, idempotent(&sent, 4_242, 3, sequence), 1),
                )
                .await,
        );
        assert_eq!(code, 0);
    }
    let request = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(topic_name("prod"))
            .with_partition_indexes(vec![0, 1, 9]),
    ]);
    let ResponseKind::DescribeProducers(r) = client
        .call(
            ApiKey::DescribeProducers,
            0,
            RequestKind::DescribeProducers(request),
        )
        .await
    else {
        panic!("not a describe producers response")
    };
    let partitions = &r.topics[0].partitions;
    assert_eq!(
        partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.active_producers.len()))
            .collect::<Vec<_>>(),
        vec![
            (0, 0, 0),
            (1, 0, 1),
            (9, ResponseError::UnknownTopicOrPartition.code(), 0)
        ]
    );
    let producer = &partitions[1].active_producers[0];
    assert_eq!(
        (
            producer.producer_id.0,
            producer.producer_epoch,
            producer.last_sequence,
            producer.last_timestamp
        ),
        (4_242, 3, 5, sent.max_timestamp())
    );

    let quotas = |entity: &str, match_type: i8, name: Option<&str>| {
        RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default().with_components(
            vec![describe_client_quotas_request::ComponentData::default()
                .with_entity_type(StrBytes::from_string(entity.to_string()))
                .with_match_type(match_type)
                .with_match(name.map(|n| StrBytes::from_string(n.to_string())))],
        ))
    };
    for (entity, match_type, name, code) in [
        ("user", 0, Some("alice"), 0),
        ("client-id", 2, None, 0),
        // Kafka's code for an entity type it does not know.
        ("group", 2, None, ResponseError::UnsupportedVersion.code()),
        ("user", 0, None, ResponseError::InvalidRequest.code()),
    ] {
        let ResponseKind::DescribeClientQuotas(r) = client
            .call(
                ApiKey::DescribeClientQuotas,
                1,
                quotas(entity, match_type, name),
            )
            .await
        else {
            panic!("not a describe client quotas response")
        };
        assert_eq!(r.error_code, code, "{entity} {match_type} {name:?}");
        if code == 0 {
            assert_eq!(r.entries.as_ref().map(Vec::len), Some(0), "no quotas exist");
        } else {
            assert!(r.error_message.is_some());
        }
    }
}

/// A real disk whose fsyncs of files under a directory named `held` wait while the gate is
/// closed, counting how many wait: a slow disk, on cue.
#[derive(Debug)]
struct GatedDisk {
    inner: RealDisk,
    closed: tokio::sync::watch::Sender<bool>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug)]
struct GatedFile {
    inner: Arc<dyn runnel_storage::disk::DiskFile>,
    held: bool,
    closed: tokio::sync::watch::Receiver<bool>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

type DiskResult<T> = runnel_storage::disk::DiskResult<T>;

#[async_trait::async_trait]
impl Disk for GatedDisk {
    async fn open(
        &self,
        path: &std::path::Path,
        mode: runnel_storage::disk::OpenMode,
    ) -> DiskResult<Arc<dyn runnel_storage::disk::DiskFile>> {
        let inner = self.inner.open(path, mode).await?;
        let held = path
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "held-0");
        Ok(Arc::new(GatedFile {
            inner,
            held,
            closed: self.closed.subscribe(),
            waiting: self.waiting.clone(),
        }))
    }
    async fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> DiskResult<()> {
        self.inner.rename(from, to).await
    }
    async fn remove(&self, path: &std::path::Path) -> DiskResult<()> {
        self.inner.remove(path).await
    }
    async fn create_dir_all(&self, path: &std::path::Path) -> DiskResult<()> {
        self.inner.create_dir_all(path).await
    }
    async fn remove_dir(&self, path: &std::path::Path) -> DiskResult<()> {
        self.inner.remove_dir(path).await
    }
    async fn list_dir(&self, path: &std::path::Path) -> DiskResult<Vec<String>> {
        self.inner.list_dir(path).await
    }
    async fn sync_dir(&self, path: &std::path::Path) -> DiskResult<()> {
        self.inner.sync_dir(path).await
    }
    async fn exists(&self, path: &std::path::Path) -> DiskResult<bool> {
        self.inner.exists(path).await
    }
}

#[async_trait::async_trait]
impl runnel_storage::disk::DiskFile for GatedFile {
    fn path(&self) -> &std::path::Path {
        self.inner.path()
    }
    async fn size_bytes(&self) -> DiskResult<u64> {
        self.inner.size_bytes().await
    }
    async fn write_at(&self, offset_bytes: u64, data: &[u8]) -> DiskResult<()> {
        self.inner.write_at(offset_bytes, data).await
    }
    async fn append(&self, data: &[u8]) -> DiskResult<u64> {
        self.inner.append(data).await
    }
    async fn read_at(&self, offset_bytes: u64, len_bytes: usize) -> DiskResult<Bytes> {
        self.inner.read_at(offset_bytes, len_bytes).await
    }
    async fn truncate(&self, len_bytes: u64) -> DiskResult<()> {
        self.inner.truncate(len_bytes).await
    }
    async fn sync_data(&self) -> DiskResult<()> {
        if self.held && *self.closed.borrow() {
            self.waiting
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut closed = self.closed.clone();
            closed
                .wait_for(|c| !c)
                .await
                .expect("the gate outlives its files");
            self.waiting
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.sync_data().await
    }
}

#[tokio::test]
async fn fetches_read_on_while_an_append_waits_for_its_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (closed, _) = tokio::sync::watch::channel(false);
    let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let disk = Arc::new(GatedDisk {
        inner: RealDisk::new(),
        closed: closed.clone(),
        waiting: waiting.clone(),
    });
    let broker = start_on(dir.path(), &[], disk).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topics("held", 1, &[("flush.messages", "1")]),
        )
        .await;
    assert_eq!(produce_one(&mut client, "held", 0, "durable").await, (0, 0));

    // The next append's fsync hangs until the gate opens.
    closed.send_replace(true);
    let addr = broker.addr;
    let slow = tokio::spawn(async move {
        let mut producer = Client::connect(addr).await;
        produce_one(&mut producer, "held", 0, "waits for the disk").await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the append never reached its fsync"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Meanwhile a fetch reads what is durable, and only that.
    let fetched = tokio::time::timeout(
        Duration::from_secs(10),
        client.call(ApiKey::Fetch, 12, fetch("held", 0, 0, 0)),
    )
    .await
    .expect("the fetch does not wait for the other append's fsync");
    assert_eq!(
        fetched_values(&fetched),
        (0, vec![(0, "durable".to_string())]),
        "the record being synced is not served before it is durable"
    );
    assert!(
        !slow.is_finished(),
        "the append is acknowledged only after its fsync"
    );

    closed.send_replace(false);
    let (code, offset) = slow.await.expect("the producer task");
    assert_eq!((code, offset), (0, 1));
    let (_, values) = fetched_values(&client.call(ApiKey::Fetch, 12, fetch("held", 0, 0, 0)).await);
    assert_eq!(values.len(), 2);
}

#[tokio::test]
async fn metadata_by_topic_id_resolves_the_id_whatever_the_name_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(ApiKey::CreateTopics, 7, create_topics("by-id", 2, &[]))
        .await;
    let id = broker.broker.image().topics["by-id"].id;
    let unknown = uuid::Uuid::from_u128(0x1234);
    // The Java AdminClient's describeTopics(ids) leaves each name at "" (its default).
    let ask = |id: uuid::Uuid, name: Option<&str>| {
        metadata_request::MetadataRequestTopic::default()
            .with_topic_id(id)
            .with_name(name.map(topic_name))
    };
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            ask(id, Some("")),
            ask(id, None),
            ask(unknown, Some("")),
        ]))
        .with_allow_auto_topic_creation(true);
    let ResponseKind::Metadata(response) = client
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(request))
        .await
    else {
        panic!()
    };
    for t in &response.topics[..2] {
        assert_eq!(t.error_code, 0, "{t:?}");
        assert_eq!(t.topic_id, id);
        assert_eq!(t.name.as_ref().map(|n| n.0.as_str()), Some("by-id"));
        assert_eq!(t.partitions.len(), 2);
    }
    let missing = &response.topics[2];
    assert_eq!(missing.error_code, ResponseError::UnknownTopicId.code());
    assert_eq!(missing.topic_id, unknown);
    assert!(
        !broker.broker.image().topics.contains_key(""),
        "no topic is created for an id"
    );
}
