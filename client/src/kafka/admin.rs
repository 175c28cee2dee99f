//! The admin client: topics, partitions, configs and offsets.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::kafka::{topic_name, validate_topic_name, ResponseError};

use super::cluster::{
    ClientConfig, Cluster, ListedOffset, OffsetSpec, TopicMetadata, TopicPartition,
};
use super::error::KafkaError;

/// A topic to create. `partitions` and `replication_factor` of -1 take the broker's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// What a config resource is (DescribeConfigs resource types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    Topic(String),
    /// A broker by node id.
    Broker(i32),
}

impl ConfigResource {
    fn kind(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => 2,
            ConfigResource::Broker(_) => 4,
        }
    }

    fn name(&self) -> String {
        match self {
            ConfigResource::Topic(t) => t.clone(),
            ConfigResource::Broker(id) => id.to_string(),
        }
    }
}

/// Where a config value comes from (DescribeConfigs' config_source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Unknown,
    DynamicTopic,
    DynamicBroker,
    DynamicDefaultBroker,
    StaticBroker,
    Default,
    Other(i8),
}

impl From<i8> for ConfigSource {
    fn from(v: i8) -> Self {
        match v {
            0 => ConfigSource::Unknown,
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    pub is_sensitive: bool,
    pub source: ConfigSource,
}

/// One change of IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    Set(String, String),
    /// Back to the default.
    Delete(String),
    /// Adds to a list-valued config.
    Append(String, String),
    /// Removes from a list-valued config.
    Subtract(String, String),
}

/// The admin client.
#[derive(Clone)]
pub struct Admin {
    cluster: Cluster,
}

impl Admin {
    pub async fn connect(config: ClientConfig) -> Result<Admin, KafkaError> {
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
        })
    }

    pub fn with_cluster(cluster: Cluster) -> Admin {
        Admin { cluster }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn timeout_ms(&self) -> i32 {
        self.cluster
            .config()
            .connection
            .request_timeout_ms
            .min(i32::MAX as u64) as i32
    }

    /// Creates one topic (or only checks that it could be, with `validate_only`).
    pub async fn create_topic(
        &self,
        topic: NewTopic,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let name = topic.name.clone();
        self.create_topics(vec![topic], validate_only)
            .await?
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| Err(missing_answer(&name)), |(_, result)| result)
    }

    /// Creates topics; one result per topic.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<Vec<(String, Result<(), KafkaError>)>, KafkaError> {
        for t in &topics {
            validate_topic_name(&t.name).map_err(|e| KafkaError::Config(e.to_string()))?;
        }
        let conn = self.cluster.controller_connection().await?;
        let timeout_ms = self.timeout_ms();
        let response = conn
            .call(|_| {
                CreateTopicsRequest::default()
                    .with_timeout_ms(timeout_ms)
                    .with_validate_only(validate_only)
                    .with_topics(
                        topics
                            .iter()
                            .map(|t| {
                                CreatableTopic::default()
                                    .with_name(topic_name(&t.name))
                                    .with_num_partitions(t.partitions)
                                    .with_replication_factor(t.replication_factor)
                                    .with_configs(
                                        t.configs
                                            .iter()
                                            .map(|(k, v)| {
                                                CreatableTopicConfig::default()
                                                    .with_name(str_bytes(k))
                                                    .with_value(Some(str_bytes(v)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .await?;
        let results = response
            .topics
            .into_iter()
            .map(|t| {
                let name = t.name.as_str().to_string();
                let result = super::error::check(
                    t.error_code,
                    || format!("create topic {name:?}"),
                    t.error_message.as_ref().map(|m| m.as_str()),
                );
                self.cluster.invalidate(&name);
                (name, result)
            })
            .collect();
        Ok(results)
    }

    /// Deletes topics by name; one result per topic.
    pub async fn delete_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, Result<(), KafkaError>)>, KafkaError> {
        let conn = self.cluster.controller_connection().await?;
        let timeout_ms = self.timeout_ms();
        let response = conn
            .call(|version| {
                let request = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
                if version >= 6 {
                    request.with_topics(
                        names
                            .iter()
                            .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                            .collect(),
                    )
                } else {
                    request.with_topic_names(names.iter().map(|n| topic_name(n)).collect())
                }
            })
            .await?;
        Ok(response
            .responses
            .into_iter()
            .map(|r| {
                let name = r.name.map(|n| n.as_str().to_string()).unwrap_or_default();
                let result = super::error::check(
                    r.error_code,
                    || format!("delete topic {name:?}"),
                    r.error_message.as_ref().map(|m| m.as_str()),
                )
                .map_err(|e| match e.code() {
                    Some(ResponseError::UnknownTopicOrPartition) => KafkaError::UnknownTopic {
                        topic: name.clone(),
                    },
                    _ => e,
                });
                self.cluster.invalidate(&name);
                (name, result)
            })
            .collect())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), KafkaError> {
        self.delete_topics(&[name.to_string()])
            .await?
            .into_iter()
            .next()
            .map_or_else(|| Err(missing_answer(name)), |(_, r)| r)
    }

    /// Names of the topics that are not internal, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>, KafkaError> {
        let metadata = self.cluster.metadata(None, false).await?;
        let mut names: Vec<String> = metadata
            .topics
            .into_iter()
            .filter(|t| !t.is_internal)
            .map(|t| t.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Partitions, leaders, replicas and ISR of `topics` (every topic when empty).
    pub async fn describe_topics(
        &self,
        topics: &[String],
    ) -> Result<Vec<TopicMetadata>, KafkaError> {
        let metadata = self
            .cluster
            .metadata((!topics.is_empty()).then_some(topics), false)
            .await?;
        if let Some((name, code)) = metadata.topic_errors.first() {
            return Err(match code {
                ResponseError::UnknownTopicOrPartition => KafkaError::UnknownTopic {
                    topic: name.clone(),
                },
                code => KafkaError::broker(*code, format!("describe topic {name:?}"), None),
            });
        }
        let mut found = metadata.topics;
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// Grows `topic` to `total_partitions` partitions.
    pub async fn create_partitions(
        &self,
        topic: &str,
        total_partitions: i32,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let conn = self.cluster.controller_connection().await?;
        let timeout_ms = self.timeout_ms();
        let response = conn
            .call(|_| {
                CreatePartitionsRequest::default()
                    .with_timeout_ms(timeout_ms)
                    .with_validate_only(validate_only)
                    .with_topics(vec![CreatePartitionsTopic::default()
                        .with_name(topic_name(topic))
                        .with_count(total_partitions)
                        .with_assignments(None)])
            })
            .await?;
        self.cluster.invalidate(topic);
        let result = response
            .results
            .into_iter()
            .find(|r| r.name.as_str() == topic)
            .ok_or_else(|| missing_answer(topic))?;
        super::error::check(
            result.error_code,
            || format!("add partitions to {topic:?}"),
            result.error_message.as_ref().map(|m| m.as_str()),
        )
    }

    /// Every config of `resource` (the broker's answer, sorted by name).
    pub async fn describe_configs(
        &self,
        resource: &ConfigResource,
    ) -> Result<Vec<ConfigEntry>, KafkaError> {
        let conn = match resource {
            ConfigResource::Broker(id) => self.cluster.connection(*id).await?,
            ConfigResource::Topic(_) => self.cluster.any_connection().await?,
        };
        let response = conn
            .call(|_| {
                DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(resource.kind())
                        .with_resource_name(str_bytes(&resource.name()))
                        .with_configuration_keys(None),
                ])
            })
            .await?;
        let result = response
            .results
            .into_iter()
            .next()
            .ok_or_else(|| missing_answer(&resource.name()))?;
        super::error::check(
            result.error_code,
            || format!("describe configs of {resource:?}"),
            result.error_message.as_ref().map(|m| m.as_str()),
        )?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.as_str().to_string(),
                value: c.value.map(|v| v.as_str().to_string()),
                read_only: c.read_only,
                is_sensitive: c.is_sensitive,
                source: ConfigSource::from(c.config_source),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Changes configs of `resource` (IncrementalAlterConfigs).
    pub async fn alter_configs(
        &self,
        resource: &ConfigResource,
        ops: &[AlterConfigOp],
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let conn = match resource {
            ConfigResource::Broker(id) => self.cluster.connection(*id).await?,
            ConfigResource::Topic(_) => self.cluster.controller_connection().await?,
        };
        let configs = ops
            .iter()
            .map(|op| {
                let (name, operation, value) = match op {
                    AlterConfigOp::Set(k, v) => (k, 0, Some(v)),
                    AlterConfigOp::Delete(k) => (k, 1, None),
                    AlterConfigOp::Append(k, v) => (k, 2, Some(v)),
                    AlterConfigOp::Subtract(k, v) => (k, 3, Some(v)),
                };
                AlterableConfig::default()
                    .with_name(str_bytes(name))
                    .with_config_operation(operation)
                    .with_value(value.map(|v| str_bytes(v)))
            })
            .collect();
        let response = conn
            .call(|_| {
                IncrementalAlterConfigsRequest::default()
                    .with_validate_only(validate_only)
                    .with_resources(vec![AlterConfigsResource::default()
                        .with_resource_type(resource.kind())
                        .with_resource_name(str_bytes(&resource.name()))
                        .with_configs(configs)])
            })
            .await?;
        let result = response
            .responses
            .into_iter()
            .next()
            .ok_or_else(|| missing_answer(&resource.name()))?;
        super::error::check(
            result.error_code,
            || format!("alter configs of {resource:?}"),
            result.error_message.as_ref().map(|m| m.as_str()),
        )
    }

    /// Offsets of partitions: earliest, latest, or the first at or after a timestamp.
    pub async fn list_offsets(
        &self,
        requests: &[(TopicPartition, OffsetSpec)],
    ) -> Result<BTreeMap<TopicPartition, Result<ListedOffset, KafkaError>>, KafkaError> {
        Ok(self
            .cluster
            .list_offsets(requests)
            .await?
            .into_iter()
            .collect())
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn missing_answer(name: &str) -> KafkaError {
    KafkaError::Protocol {
        addr: "the broker".into(),
        reason: format!("its answer did not mention {name:?}"),
    }
}
