//! Topics, partitions, configs and the cluster.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_user_scram_credentials;
pub mod incremental_alter_configs;
pub mod metadata;

/// The authorized-operations bit fields of Metadata and DescribeCluster (bit n is Kafka's
/// AclOperation code n). Runnel has no authorizer yet, so a client may do everything a
/// resource type supports, and that is what Kafka answers when no authorizer is configured
/// (AuthHelper.authorizedOperations); clients such as librdkafka's DescribeTopics and
/// DescribeCluster read these to say what the caller may do.
pub mod authorized_operations {
    const READ: i32 = 3;
    const WRITE: i32 = 4;
    const CREATE: i32 = 5;
    const DELETE: i32 = 6;
    const ALTER: i32 = 7;
    const DESCRIBE: i32 = 8;
    const CLUSTER_ACTION: i32 = 9;
    const DESCRIBE_CONFIGS: i32 = 10;
    const ALTER_CONFIGS: i32 = 11;
    const IDEMPOTENT_WRITE: i32 = 12;

    /// What Kafka's AclEntry.supportedOperations lists for topics.
    pub const TOPIC: i32 = 1 << READ
        | 1 << WRITE
        | 1 << CREATE
        | 1 << DELETE
        | 1 << ALTER
        | 1 << DESCRIBE
        | 1 << DESCRIBE_CONFIGS
        | 1 << ALTER_CONFIGS;
    /// ... for consumer groups.
    pub const GROUP: i32 =
        1 << READ | 1 << DELETE | 1 << DESCRIBE | 1 << DESCRIBE_CONFIGS | 1 << ALTER_CONFIGS;
    /// ... and for the cluster.
    pub const CLUSTER: i32 = 1 << CREATE
        | 1 << ALTER
        | 1 << DESCRIBE
        | 1 << CLUSTER_ACTION
        | 1 << DESCRIBE_CONFIGS
        | 1 << ALTER_CONFIGS
        | 1 << IDEMPOTENT_WRITE;
    const _: () = assert!(TOPIC == 3576 && GROUP == 3400 && CLUSTER == 8096);

    /// Kafka's "not asked" value.
    pub const NOT_ASKED: i32 = i32::MIN;

    /// `operations` when the request asked for them, else Kafka's "not asked".
    pub fn if_asked(asked: bool, operations: i32) -> i32 {
        if asked {
            operations
        } else {
            NOT_ASKED
        }
    }
}
