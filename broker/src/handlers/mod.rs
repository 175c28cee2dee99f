//! One handler per Kafka API, all alike: a request and its version in, a response out.
//! Errors go into the response's error codes; a handler never fails the connection.
//!
//! Handlers are grouped by family, as a reader looks for them: [`data`] (produce, fetch
//! and offsets of partitions), [`admin`] (topics, configs, the cluster), [`group`] (the
//! group coordinator's APIs) and [`txn`] (producer ids, and transactions when they come).
//! [`handle`] is the one place a decoded request is dispatched.

pub mod admin;
pub mod data;
pub mod group;
pub mod txn;

pub use admin::api_versions;

use std::net::SocketAddr;

use runnel_protocol::kafka::{Request, RequestKind, ResponseKind};

use super::Broker;

/// Answers one request; `None` when Kafka sends no response (Produce with acks=0).
pub async fn handle(broker: &Broker, request: Request, peer: SocketAddr) -> Option<ResponseKind> {
    let v = request.version;
    let client_id = request
        .header
        .client_id
        .as_deref()
        .unwrap_or_default()
        .to_string();
    Some(match request.body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(admin::api_versions::handle(r, v)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(admin::metadata::handle(broker, r, v).await)
        }
        RequestKind::Produce(r) => {
            ResponseKind::Produce(data::produce::handle(broker, r, v).await?)
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(data::fetch::handle(broker, r, v).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(data::list_offsets::handle(broker, r, v).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            data::offset_for_leader_epoch::handle(broker, r, v).await,
        ),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics::handle(broker, r, v).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics::handle(broker, r, v).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions::handle(broker, r, v).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(data::delete_records::handle(broker, r, v).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(txn::init_producer_id::handle(broker, r, v).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs::handle(broker, r, v))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(admin::alter_configs::handle(broker, r, v).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            admin::incremental_alter_configs::handle(broker, r, v).await,
        ),
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(group::find_coordinator::handle(broker, r, v).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(group::join_group::handle(broker, r, v, &client_id, peer).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(group::sync_group::handle(broker, r, v).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(group::heartbeat::handle(broker, r, v).await)
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(group::leave_group::handle(broker, r, v).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(group::offset_commit::handle(broker, r, v).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(group::offset_fetch::handle(broker, r, v).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(group::offset_delete::handle(broker, r, v).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(group::describe_groups::handle(broker, r, v).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(group::list_groups::handle(broker, r, v).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            group::consumer_group_heartbeat::handle(broker, r, v, &client_id, peer).await,
        ),
        RequestKind::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(
            group::consumer_group_describe::handle(broker, r, v).await,
        ),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(group::delete_groups::handle(broker, r, v).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(admin::describe_cluster::handle(broker, r, v))
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(admin::describe_quorum::handle(broker, r, v).await)
        }
        RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(
            admin::describe_topic_partitions::handle(broker, r, v),
        ),
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(admin::describe_log_dirs::handle(broker, r, v).await)
        }
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(admin::describe_client_quotas::handle(r, v))
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            admin::describe_user_scram_credentials::handle(r, v),
        ),
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(txn::describe_producers::handle(broker, r, v).await)
        }
        other => {
            // decode_request admits only the APIs in supported_versions, all handled above.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a decoded request");
            return None;
        }
    })
}
