//! DescribeConfigs: topic settings with their sources, and the broker's settings.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::config::{ConfigSource, TOPIC_CONFIGS};
use crate::Broker;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Broker settings shown besides the topic defaults: (key, Kafka's default).
const BROKER_KEYS: &[(&str, &str)] = &[
    ("advertised.listeners", ""),
    ("auto.create.topics.enable", "true"),
    ("connections.max.idle.ms", "600000"),
    ("default.replication.factor", "1"),
    ("listeners", "PLAINTEXT://127.0.0.1:9092"),
    ("log.cleaner.backoff.ms", "15000"),
    ("log.dirs", "./runnel-data"),
    ("log.retention.check.interval.ms", "300000"),
    ("node.id", "1"),
    ("num.partitions", "1"),
    ("socket.request.max.bytes", "104857600"),
];

pub fn handle(
    broker: &Broker,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let wanted = |name: &str| {
            resource
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        };
        let result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let entries: Vec<(String, String, ConfigSource, i8)> = match resource.resource_type {
            RESOURCE_TOPIC => {
                let image = broker.image();
                let Some(topic) = image.topics.get(resource.resource_name.as_str()) else {
                    results.push(
                        result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "topic '{}' does not exist",
                                resource.resource_name
                            )))),
                    );
                    continue;
                };
                let config = broker.topic_config(topic);
                config
                    .entries()
                    .map(|(name, value, source)| {
                        let config_type = TOPIC_CONFIGS
                            .iter()
                            .find(|d| d.name == name)
                            .map_or(0, |d| d.config_type);
                        (name.to_string(), value.to_string(), source, config_type)
                    })
                    .collect()
            }
            RESOURCE_BROKER
                if resource.resource_name.is_empty()
                    || resource.resource_name.as_str() == broker.config.node_id.to_string() =>
            {
                let mut entries = Vec::new();
                for (key, default) in BROKER_KEYS {
                    let (value, source) = match broker.config.properties.get(*key) {
                        Some(v) => (v.clone(), ConfigSource::StaticBroker),
                        None => (default.to_string(), ConfigSource::Default),
                    };
                    entries.push((key.to_string(), value, source, 0));
                }
                for def in TOPIC_CONFIGS {
                    let (value, source) = broker.config.topic_default(def);
                    entries.push((
                        def.broker_keys[0].to_string(),
                        value,
                        source,
                        def.config_type,
                    ));
                }
                entries.sort();
                entries
            }
            other => {
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "cannot describe resource type {other} '{}'",
                            resource.resource_name
                        )))),
                );
                continue;
            }
        };
        let read_only = resource.resource_type == RESOURCE_BROKER;
        let configs = entries
            .into_iter()
            .filter(|(name, ..)| wanted(name))
            .map(|(name, value, source, config_type)| {
                DescribeConfigsResourceResult::default()
                    .with_name(StrBytes::from_string(name))
                    .with_value(Some(StrBytes::from_string(value)))
                    .with_read_only(read_only)
                    .with_config_source(source as i8)
                    .with_config_type(config_type)
            })
            .collect();
        results.push(result.with_configs(configs));
    }
    DescribeConfigsResponse::default().with_results(results)
}
