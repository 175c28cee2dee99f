//! DescribeConfigs: topic settings with their sources and synonyms, and the broker's
//! settings, as Kafka reports them.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::config::{ConfigSource, TOPIC_CONFIGS};
use crate::Broker;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's ConfigType codes (DescribeConfigs v3+).
const BOOLEAN: i8 = 1;
const STRING: i8 = 2;
const INT: i8 = 3;
const LONG: i8 = 5;

/// Broker settings shown besides the topic defaults: (key, Kafka's default, its type).
const BROKER_KEYS: &[(&str, &str, i8)] = &[
    ("advertised.listeners", "", STRING),
    ("auto.create.topics.enable", "true", BOOLEAN),
    ("broker.id", "-1", INT),
    ("connections.max.idle.ms", "600000", LONG),
    ("default.replication.factor", "1", INT),
    ("delete.topic.enable", "true", BOOLEAN),
    ("group.initial.rebalance.delay.ms", "3000", INT),
    ("listeners", "PLAINTEXT://127.0.0.1:9092", STRING),
    ("log.cleaner.backoff.ms", "15000", LONG),
    ("log.dirs", "./runnel-data", STRING),
    ("log.retention.check.interval.ms", "300000", LONG),
    ("log.retention.hours", "168", INT),
    ("log.roll.hours", "168", INT),
    ("node.id", "1", INT),
    ("num.partitions", "1", INT),
    ("offsets.topic.num.partitions", "50", INT),
    ("socket.request.max.bytes", "104857600", INT),
];

/// Broker keys Kafka has no default for (a coarser key such as `log.retention.hours`
/// decides): described with a null value until set.
const NULL_BY_DEFAULT: &[&str] = &["log.retention.ms", "log.roll.ms", "log.flush.interval.ms"];

/// One described setting: name, value, source, type, synonyms.
type Entry = (
    String,
    Option<String>,
    ConfigSource,
    i8,
    Vec<DescribeConfigsSynonym>,
);

fn synonym(name: &str, value: Option<&str>, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
        .with_source(source as i8)
}

pub fn handle(
    broker: &Broker,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let include_synonyms = request.include_synonyms;
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
        let properties = &broker.config.properties;
        let entries: Vec<Entry> = match resource.resource_type {
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
                        let def = TOPIC_CONFIGS.iter().find(|d| d.name == name);
                        let config_type = def.map_or(0, |d| d.config_type);
                        // Kafka's synonyms, most to least specific: the topic's override,
                        // the broker keys set in server.properties, the broker default.
                        let mut synonyms = Vec::new();
                        if source == ConfigSource::DynamicTopic {
                            synonyms.push(synonym(name, Some(value), source));
                        }
                        if let Some(def) = def {
                            for key in def.broker_keys {
                                if let Some(v) = properties.get(*key) {
                                    synonyms.push(synonym(
                                        key,
                                        Some(v),
                                        ConfigSource::StaticBroker,
                                    ));
                                }
                            }
                            let first = def.broker_keys[0];
                            if first != name
                                && !NULL_BY_DEFAULT.contains(&first)
                                && !properties.contains_key(first)
                            {
                                synonyms.push(synonym(
                                    first,
                                    Some(def.default),
                                    ConfigSource::Default,
                                ));
                            }
                        }
                        (
                            name.to_string(),
                            Some(value.to_string()),
                            source,
                            config_type,
                            synonyms,
                        )
                    })
                    .collect()
            }
            // The cluster-wide default resource ("") holds dynamic defaults; Runnel has none.
            RESOURCE_BROKER if resource.resource_name.is_empty() => Vec::new(),
            RESOURCE_BROKER
                if resource.resource_name.as_str() == broker.config.node_id.to_string() =>
            {
                let mut entries = Vec::new();
                let node_id = broker.config.node_id.to_string();
                for (key, default, config_type) in BROKER_KEYS {
                    let set = properties.get(*key).cloned().or_else(|| {
                        // broker.id is node.id in KRaft mode.
                        (*key == "broker.id" && properties.contains_key("node.id"))
                            .then(|| node_id.clone())
                    });
                    let (value, source) = match set {
                        Some(v) => (v, ConfigSource::StaticBroker),
                        None => (default.to_string(), ConfigSource::Default),
                    };
                    entries.push((
                        key.to_string(),
                        Some(value),
                        source,
                        *config_type,
                        Vec::new(),
                    ));
                }
                for def in TOPIC_CONFIGS {
                    let key = def.broker_keys[0];
                    let (value, source) = match properties.get(key) {
                        Some(v) => (Some(v.clone()), ConfigSource::StaticBroker),
                        None if NULL_BY_DEFAULT.contains(&key) => (None, ConfigSource::Default),
                        None => (Some(def.default.to_string()), ConfigSource::Default),
                    };
                    entries.push((key.to_string(), value, source, def.config_type, Vec::new()));
                }
                for entry in &mut entries {
                    if let Some(value) = &entry.1 {
                        entry.4 = vec![synonym(&entry.0, Some(value), entry.2)];
                    }
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
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
        // Runnel changes no broker setting at runtime: all of them are read-only.
        let read_only = resource.resource_type == RESOURCE_BROKER;
        let configs = entries
            .into_iter()
            .filter(|(name, ..)| wanted(name))
            .map(|(name, value, source, config_type, synonyms)| {
                DescribeConfigsResourceResult::default()
                    .with_name(StrBytes::from_string(name))
                    .with_value(value.map(StrBytes::from_string))
                    .with_read_only(read_only)
                    .with_config_source(source as i8)
                    .with_config_type(config_type)
                    .with_synonyms(if include_synonyms {
                        synonyms
                    } else {
                        Vec::new()
                    })
                    // Runnel has no documentation strings; Kafka sends null unless asked.
                    .with_documentation(None)
            })
            .collect();
        results.push(result.with_configs(configs));
    }
    DescribeConfigsResponse::default().with_results(results)
}
