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
pub mod describe_topic_partitions;
pub mod describe_user_scram_credentials;
pub mod incremental_alter_configs;
pub mod metadata;
